"""The package as a whole: its layers, its public API (snapshot), the 0.1 import paths kept with warnings, and its
documentation (the Sphinx build, docstrings of public names, their Raises sections)."""
import ast
import json
import os
import re
import subprocess
import sys
import warnings

import pytest

import api_snapshot
import resnet_gluon
from helpers import REPO

OLD_API = os.path.join(REPO, "tests", "data", "api_0_1.json")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO})


def test_import_contracts_hold():
    """The layer rules of .importlinter (deploy never imports train, nothing imports cli, ...)."""
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    result = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


def test_inference_and_evaluation_load_no_horovod_or_dali():
    result = _run(
        "import sys, numpy as np, mxnet as mx\n"
        "import resnet_gluon as rg\n"
        "from resnet_gluon.deploy.predictor import Predictor\n"
        "from resnet_gluon.evaluation import evaluate\n"
        "net = rg.resnet18_v1_5(classes=3); net.initialize()\n"
        "p = Predictor(net, preprocessing=rg.Preprocessing.for_size(32))\n"
        "print(p.predict(np.zeros((40, 50, 3), np.uint8), top_k=1))\n"
        "evaluate(net, [(mx.nd.zeros((2, 3, 32, 32)), mx.nd.zeros((2,)))])\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('horovod', 'nvidia.dali')))\n"
        "assert not loaded, loaded\n")
    assert result.returncode == 0, result.stderr[-3000:]



def test_lazy_names_import_horovod_and_dali_as_the_package_docstring_says():
    """Only fit's and the Trainer's modules load Horovod (and DALI before it) on import."""
    result = _run(
        "import sys\n"
        "from resnet_gluon import Callback, Checkpoint, EMA, Predictor, ProgressBar, Report, TensorBoard, evaluate\n"
        "def loaded():\n"
        "    return sorted({m.split('.')[0] for m in sys.modules if m.startswith(('horovod', 'nvidia.dali'))})\n"
        "print(loaded())\n"
        "from resnet_gluon import Trainer, fit\n"
        "print(loaded())\n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:2] == ["[]", "['horovod', 'nvidia']"], result.stdout

def test_dir_lists_the_lazy_public_names():
    names = dir(resnet_gluon)
    for name in ("fit", "Trainer", "Predictor", "Checkpoint", "amp", "pipelines", "resnet50_v1_5", "Recipe"):
        assert name in names
    assert set(resnet_gluon.__all__) <= set(names)
    for name in resnet_gluon.__all__:
        assert getattr(resnet_gluon, name) is not None


def test_public_api_matches_the_snapshot():
    with open(api_snapshot.SNAPSHOT) as f:
        expected = f.read()
    actual = api_snapshot.surface()
    if actual != expected:
        import difflib

        diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(), "snapshot", "now",
                                             lineterm="", n=1))
        pytest.fail("the public API changed; if that is meant, add a CHANGELOG entry and run "
                    f"`python tests/api_snapshot.py --update`:\n{diff[:6000]}")


def test_each_public_name_has_one_home():
    """No public module lists in __all__ a name defined in another module (re-exports are the top level's)."""
    import importlib
    import inspect

    offenders = []
    for module_name in api_snapshot.public_modules():
        if module_name == "resnet_gluon":
            continue
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            home = getattr(obj, "__module__", None) if (inspect.isclass(obj) or inspect.isfunction(obj)) else None
            if home and home != module_name:
                offenders.append(f"{module_name}.{name} (defined in {home})")
    assert not offenders, offenders


def _package_sources():
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "resnet_gluon"
    return {str(p.relative_to(root.parent)): ast.parse(p.read_text()) for p in sorted(root.rglob("*.py"))}


def test_no_module_imports_a_private_name_of_another():
    """Helpers shared between modules have a documented home with a public name (private modules included)."""
    import ast

    offenders = [f"{path}: from {'.' * node.level}{node.module or ''} import {alias.name}"
                 for path, tree in _package_sources().items() for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level for alias in node.names
                 if alias.name.startswith("_") and not alias.name.startswith("__")
                 and node.module is not None]  # `from . import _private_module` is fine
    assert not offenders, offenders


def test_pathlike_is_defined_once():
    import ast

    from resnet_gluon._core import files
    from resnet_gluon.data import recordio
    from resnet_gluon.models import checkpoint, weights

    defined = [path for path, tree in _package_sources().items() for node in ast.walk(tree)
               if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PathLike" for t in node.targets)]
    assert defined == ["resnet_gluon/_core/files.py"]
    assert recordio.PathLike is checkpoint.PathLike is weights.PathLike is files.PathLike


# The import paths of the README at 0.1 (commit cbc340b) that moved.
README_0_1 = [
    ("from resnet_gluon.data import Preprocessing", "resnet_gluon.data.preprocessing.Preprocessing"),
    ("from resnet_gluon.transfer import load_pretrained, set_features_lr_mult", "resnet_gluon.models.transfer"),
    ("from resnet_gluon.weights import save_parameters", "resnet_gluon.models.weights"),
    ("import resnet_gluon.checkpoint", "resnet_gluon.models.checkpoint"),
    ("import resnet_gluon.blocks", "resnet_gluon.models.blocks"),
    ("from resnet_gluon.image_folders import images_to_recordio, split_images_to_recordio",
     "resnet_gluon.data.folders"),
    ("from resnet_gluon.inference import onnx_logits", "resnet_gluon.deploy.export.onnx_logits"),
]


def test_short_module_names_of_the_top_level_import_without_warning():
    result = _run("import warnings\nwarnings.filterwarnings('error', '.*resnet_gluon', DeprecationWarning)\n"
                  "import resnet_gluon.amp, resnet_gluon.pipelines\n"
                  "from resnet_gluon.amp import DTYPE_TABLE\n"
                  "from resnet_gluon.dist import import_horovod\n"
                  "from resnet_gluon.runtime import gpu_device_id\n"
                  "from resnet_gluon import amp, pipelines\n"
                  "assert resnet_gluon.amp is amp and amp.__name__ == 'resnet_gluon._core.amp'\n"
                  "assert pipelines.__name__ == 'resnet_gluon.data.pipelines'\n")
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("statement,new_path", README_0_1)
def test_readme_import_paths_of_0_1_work_with_a_warning(statement, new_path):
    result = _run("import warnings\nwarnings.simplefilter('always')\n"
                  f"with warnings.catch_warnings(record=True) as caught:\n    {statement}\n"
                  "print('\\n'.join(f'{w.category.__name__}: {w.message}' for w in caught"
                  " if 'resnet_gluon' in str(w.message)))\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "DeprecationWarning" in result.stdout and new_path in result.stdout, result.stdout


def test_every_name_of_every_0_1_module_still_resolves_to_the_same_object():
    """All 218 names of the 0.1 modules' __all__ (recorded in tests/data/api_0_1.json before the move)."""
    import importlib

    with open(OLD_API) as f:
        old_api = json.load(f)
    missing = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for old, names in old_api.items():
            module = importlib.import_module(f"resnet_gluon.{old}")
            for name in names:
                try:
                    getattr(module, name)
                except AttributeError:
                    missing.append(f"resnet_gluon.{old}.{name}")
    assert not missing, missing


def test_api_reference_builds_without_a_warning(tmp_path):
    """``make docs``: Sphinx (autodoc + napoleon) with warnings as errors, a cross-reference to a name of the package
    that does not exist among them (``nitpicky``, docs/conf.py); about 12 s of CPU."""
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "docs",
                             str(tmp_path / "html")], cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, f"Sphinx warnings (fix the docstrings' RST):\n{result.stderr[-6000:]}"
    assert (tmp_path / "html" / "api" / "models.html").exists()


# Numpydoc section headers: the Raises section ends at the next one.
_SECTION = re.compile(r"^(Parameters|Returns|Yields|Raises|Warns|Notes|Examples|See Also|Attributes|Methods|"
                      r"Other Parameters|References)\n-{3,}$", re.M)


def _raises_section(doc: str) -> set:
    """The words of a numpydoc docstring's Raises section (exception class names among them)."""
    match = re.search(r"^Raises\n-{3,}$", doc, re.M)
    if not match:
        return set()
    rest = doc[match.end():]
    end = _SECTION.search(rest)
    return set(re.findall(r"\w+", rest[:end.start()] if end else rest))


def _raised(function: ast.FunctionDef) -> set:
    """Exception classes a function's own body raises by name (``raise X(...)``, ``raise mod.X``); bare re-raises,
    raised variables and nested functions are not its own."""
    names = set()
    stack = list(ast.iter_child_nodes(function))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = exc.attr if isinstance(exc, ast.Attribute) else getattr(exc, "id", "")
            if name[:1].isupper():
                names.add(name)
        stack.extend(ast.iter_child_nodes(node))
    return names


def _public_definitions():
    """(dotted name, AST node, docstring, object) of every public function, class and method; a class's
    ``__init__`` comes as ``<class>()`` with the class's docstring (numpydoc documents the constructor there)."""
    import importlib
    import inspect

    for module_name in api_snapshot.public_modules():
        module = importlib.import_module(module_name)
        if module_name == "resnet_gluon" or not hasattr(module, "__all__"):
            continue
        for node in ast.parse(inspect.getsource(module)).body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name not in module.__all__:
                continue
            name, obj = f"{module_name}.{node.name}", getattr(module, node.name)
            doc = inspect.getdoc(obj) or ""
            yield name, node, doc, obj
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if not isinstance(item, ast.FunctionDef):
                        continue
                    if item.name in ("__init__", "__post_init__"):
                        yield f"{name}()", item, doc, obj
                    elif not item.name.startswith("_"):
                        # inspect.getdoc inherits: a hook overriding Callback's documented one keeps its contract
                        method = inspect.getattr_static(obj, item.name)
                        yield f"{name}.{item.name}", item, inspect.getdoc(getattr(obj, item.name)) or "", method


def test_every_public_function_class_and_method_has_a_docstring():
    missing = [name for name, _, doc, _ in _public_definitions() if not doc.strip()]
    assert not missing, f"public names without a docstring (write a numpydoc one): {missing}"


def test_every_exception_a_public_function_raises_is_in_its_raises_section():
    """AST: ``raise X`` in the body of a public function or method (or a class's ``__init__``) needs ``X`` in the
    Raises section of its docstring (the class's, for ``__init__``). Raises from private helpers are not seen."""
    undocumented = [f"{name} raises {exc}" for name, node, doc, _ in _public_definitions()
                    for exc in sorted(_raised(node) - _raises_section(doc))]
    assert not undocumented, f"exceptions missing from a Raises section: {undocumented}"


def test_parameters_sections_name_only_real_parameters():
    """Napoleon reads every line after the last entry of a Parameters section as more parameters (a closing
    paragraph "Input ``(N, C, H, W)`` gives ..." renders as parameters "Input ``(N", "H", ..., with no Sphinx
    warning): each name it finds must be one of the signature's."""
    import inspect

    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import NumpyDocstring

    config = Config(napoleon_use_param=True)
    wrong = []
    for name, node, doc, obj in _public_definitions():
        if name.endswith("()") or not ast.get_docstring(node) or isinstance(obj, property):
            continue  # a constructor's parameters are its class's; an inherited docstring is its base's
        signature = inspect.signature(obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj)
        if any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            continue
        documented = re.findall(r"^:param ([^:]+):", str(NumpyDocstring(doc, config)), re.M)
        wrong += [f"{name}: {p!r}" for p in documented if p.lstrip("\\*") not in signature.parameters]
    assert not wrong, f"Parameters sections naming no parameter (move closing text above the section): {wrong}"
