"""The GitHub Actions workflow is validated against the schema vendored by check-jsonschema,
so a broken workflow fails here, not on GitHub."""

import json
from importlib.resources import files
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")
yaml = pytest.importorskip("yaml")
pytest.importorskip("check_jsonschema")

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _schema() -> dict:
    path = files("check_jsonschema") / "builtin_schemas" / "vendor" / "github-workflows.json"
    return json.loads(path.read_text())


def test_there_is_a_workflow():
    assert WORKFLOWS, "no workflow under .github/workflows"


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as boolean True; GitHub (and check-jsonschema) read it as "on".
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_github_schema(wf):
    doc = _load(wf)
    validator = jsonschema.Draft7Validator(_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_workflow():
    # Guards against a validator that accepts anything.
    broken = {"on": "push", "jobs": {"x": {"runs-on": "ubuntu-latest", "steps": [{"uses": 3}]}}}
    assert list(jsonschema.Draft7Validator(_schema()).iter_errors(broken))


def test_matrix_covers_every_workspace_member():
    doc = _load(WORKFLOWS[0])
    matrix = doc["jobs"]["package-tests"]["strategy"]["matrix"]
    members = {p.parent.name for p in ROOT.glob("packages/*/pyproject.toml")} | {"mm-cli"}
    assert set(matrix["package"]) == members
    assert set(matrix["python"]) == {"3.11", "3.12"}
    for inc in matrix["include"]:
        assert (ROOT / inc["tests"]).is_dir()
