"""The hand-written stubs of tenure._tenure match the native module, both ways."""

from __future__ import annotations

import ast
import inspect
import pathlib

import tenure
from tenure import _tenure

STUB = pathlib.Path(tenure.__file__).with_name("_tenure.pyi")
# Names the stub defines only as type aliases (not in the module).
ALIASES = {"EventCallback", "LostReason", "EventKind", "RetryPolicy", "Peers"}
IGNORED = {"__doc__", "__file__", "__loader__", "__name__", "__package__", "__spec__",
           "__all__", "__builtins__", "__cached__", "__path__"}


def stub_tree():
    tree = ast.parse(STUB.read_text())
    top = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            top[node.name] = node
        elif isinstance(node, ast.FunctionDef):
            top[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top[node.target.id] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    top[t.id] = node
    return top


def stub_params(fn: ast.FunctionDef):
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    if a.vararg:
        names.append("*" + a.vararg.arg)
    names += [x.arg for x in a.kwonlyargs]
    if a.kwarg:
        names.append("**" + a.kwarg.arg)
    return names


def native_params(obj):
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    out = []
    for p in sig.parameters.values():
        if p.name in ("self", "cls", "$self", "$cls"):
            continue
        if p.kind is p.VAR_POSITIONAL:
            out.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            out.append("**" + p.name)
        else:
            out.append(p.name)
    return out


def test_every_module_name_is_in_the_stub_and_back():
    top = stub_tree()
    module_names = {n for n in vars(_tenure) if n not in IGNORED}
    stub_names = set(top) - ALIASES
    assert module_names - stub_names == set(), "missing from the stub"
    assert stub_names - module_names == set(), "in the stub but not in the module"


def test_classes_have_the_same_members_and_parameters():
    top = stub_tree()
    checked = 0
    for name, node in top.items():
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(_tenure, name)
        if issubclass(cls, BaseException):
            continue
        stub_members = {}
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                stub_members[item.name] = item
        native_members = {n for n in vars(cls) if not n.startswith("__")}
        stub_public = {n for n in stub_members if not n.startswith("__")}
        assert native_members == stub_public, (name, native_members ^ stub_public)
        for mname, fn in stub_members.items():
            if mname == "__new__":
                params = native_params(cls)
            elif mname.startswith("__"):
                assert hasattr(cls, mname), (name, mname)
                continue
            else:
                attr = inspect.getattr_static(cls, mname)
                if not callable(attr) and not isinstance(attr, staticmethod):
                    continue  # a property
                params = native_params(getattr(cls, mname))
            if params is not None:
                assert params == stub_params(fn), (name, mname, params, stub_params(fn))
                checked += 1
    assert checked > 40


def test_functions_have_the_same_parameters():
    for name, node in stub_tree().items():
        if isinstance(node, ast.FunctionDef):
            params = native_params(getattr(_tenure, name))
            assert params is None or params == stub_params(node), (name, params)


def test_package_exports_exist():
    for name in tenure.__all__:
        assert hasattr(tenure, name), name
    assert (pathlib.Path(tenure.__file__).with_name("py.typed")).exists()
