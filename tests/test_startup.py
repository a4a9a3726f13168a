"""A command imports what it runs: ``import warmstart``, the CLI up to its arguments and a local checkpoint
transfer leave the heavy libraries alone (each checked in a fresh process, through ``sys.modules``).

What each costs a cold process here (benchmarks/STARTUP.md): NumPy ~0.1 s, fsspec ~0.07 s (asyncio, entry
points), pydantic ~0.1 s with the rules' models, PyYAML ~10 ms (a JSON rules file does without it), ml_dtypes
~0.55 s, rich ~0.02 s, TensorFlow ~2 s.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import warmstart

#: Never imported by ``import warmstart`` nor by the CLI before it runs a command.
NEVER_AT_IMPORT = ("tensorflow", "keras", "prefect", "h5py", "ml_dtypes", "s3fs", "gcsfs", "rich", "numpy", "pydantic",
                   "fsspec", "yaml", "google.protobuf", "re2", "distributed")
#: Never imported by a transfer between local checkpoints that copies bytes as they are (no cast, no transform), its
#: rules plain (no transforms, no verify: read without pydantic).
NEVER_IN_A_LOCAL_COPY = ("tensorflow", "keras", "prefect", "h5py", "ml_dtypes", "s3fs", "gcsfs", "rich", "numpy",
                         "pydantic",
                         "fsspec", "distributed", "warmstart.formats.keras", "warmstart.strategies.tf1",
                         "warmstart.strategies.tf2", "warmstart.tables.keras_files", "warmstart.tables.tf_graphs")


def _imported(code: str, watched: tuple[str, ...], cwd=None) -> list[str]:
    """Which of ``watched`` a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_import_warmstart_imports_no_heavy_library():
    assert _imported("import warmstart", NEVER_AT_IMPORT) == []


def test_the_cli_parses_its_arguments_and_prints_its_help_without_heavy_libraries():
    parse = ("from warmstart.cli import _parser\n"
             "_parser().parse_args(['transfer', 'a', 'b', 'c', '--rules', 'r.yaml', '--strategy', 'stream'])")
    assert _imported(parse, NEVER_AT_IMPORT) == []
    show_help = ("import contextlib, io\nfrom warmstart.cli import main\n"
                 "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
                 "    main(['--help'])")
    assert _imported(show_help, NEVER_AT_IMPORT) == []


def test_a_local_transfer_that_copies_bytes_imports_neither_numpy_nor_fsspec_nor_any_tf_module(bert_dirs, tmp_path):
    import yaml

    from warmstart.examples import EXAMPLE_RULES

    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(EXAMPLE_RULES))
    assert _imported(_cli_transfer(bert_dirs, tmp_path, rules), NEVER_IN_A_LOCAL_COPY, cwd=tmp_path) == []
    import tensorflow as tf

    assert tf.train.latest_checkpoint(str(tmp_path / "out")) is not None  # what it wrote loads


def test_a_local_transfer_with_json_rules_does_not_import_the_yaml_parser(bert_dirs, tmp_path):
    from warmstart.examples import EXAMPLE_RULES

    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(EXAMPLE_RULES))
    assert _imported(_cli_transfer(bert_dirs, tmp_path, rules), ("yaml", *NEVER_IN_A_LOCAL_COPY), cwd=tmp_path) == []


def test_a_checkpoint_without_a_metagraph_beside_it_does_not_import_the_metagraph_reader(bert_dirs, tmp_path):
    """The MetaGraph reader and the Saver-key walk load only when a ``.meta`` is beside a TF1 checkpoint."""
    import shutil

    import yaml

    from warmstart.examples import EXAMPLE_RULES

    shutil.copytree(bert_dirs, tmp_path / "alone", ignore=shutil.ignore_patterns("*.meta"))
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(EXAMPLE_RULES))
    readers = ("warmstart.formats.meta_graph", "warmstart.formats.saver_keys")
    assert _imported(_cli_transfer(tmp_path / "alone", tmp_path, rules), readers, cwd=tmp_path) == []
    assert list((bert_dirs / "src").glob("*.meta")), "the fixture's source has its MetaGraph beside it"
    assert _imported(_cli_transfer(bert_dirs, tmp_path / "with", rules), readers, cwd=tmp_path) == list(readers)


def _cli_transfer(bert_dirs, tmp_path, rules) -> str:
    """The code of a ``warmstart transfer --no-prefect`` of the BERT fixture into ``tmp_path/out``, which must
    succeed."""
    return (f"from warmstart.cli import main\n"
            f"assert main(['transfer', {str(bert_dirs / 'src')!r}, {str(bert_dirs / 'tpl')!r}, "
            f"{str(tmp_path / 'out')!r}, '--rules', {str(rules)!r}, '--no-prefect']) == 0")


def test_no_rules_model_builds_its_validator_at_import():
    """Every rules model defers its validator (built once, for the whole tree, when rules are first validated):
    building one at import runs pydantic's plugin lookup over every installed distribution, on every command."""
    modules = "\n".join(f"import {m}" for m in ("warmstart.planning.rules", "warmstart.planning.parity",
                                                "warmstart.planning.blocks", "warmstart.planning.initializers"))
    assert _imported(modules, ("pydantic.plugin._loader", "importlib.metadata")) == []


PACKAGES = ["warmstart", "warmstart.storage", "warmstart.formats", "warmstart.formats.bundle", "warmstart.formats.keras",
            "warmstart.tables", "warmstart.planning", "warmstart.strategies", "warmstart.pipeline"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_a_package_exports_is_there_when_first_used(package):
    module = __import__(package, fromlist=["_"])
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, missing
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


def test_a_name_is_imported_once_then_kept_on_its_package():
    from warmstart.planning.rules import Rules

    assert warmstart.Rules is Rules
    assert "Rules" in vars(warmstart)  # a plain attribute now: the module is not asked again
