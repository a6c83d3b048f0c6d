"""Functions travel by qualified name, as pickle sends them.

A reference is "module:qualname", or "@/path/to/script.py:qualname" for a
function of the caller's main script, which a worker loads under the name
"__mp_main__" as multiprocessing's spawn start method does (its
`if __name__ == "__main__":` block does not run there).
"""
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types


def reference(fn):
    """Returns the reference that names `fn`, or raises TypeError naming why a
    worker could not find it (a lambda, a local function, a bound method of an
    instance, a callable object): the same rule as ProcessPoolExecutor's
    pickling."""
    if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType)) or isinstance(fn, type):
        module = getattr(fn, "__module__", None)
        qualname = getattr(fn, "__qualname__", None)
    else:
        raise TypeError(
            f"fanmap: {fn!r} is not a module-level function or class: workers find the "
            "function by its qualified name (module:qualname), as pickle does")
    if not module or not qualname:
        raise TypeError(f"fanmap: {fn!r} has no module or qualified name")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise TypeError(
            f"fanmap: cannot send {module}.{qualname}: a lambda or a function defined inside "
            "another function has no importable name; define it at module level")
    # It must be the object its name leads to (a decorator that rebinds the
    # name would make a worker call something else).
    mod = sys.modules.get(module)
    if mod is None:
        raise TypeError(f"fanmap: module {module!r} of {qualname} is not imported")
    try:
        found = _walk(mod, qualname)
    except AttributeError:
        found = None
    if found is not fn:
        raise TypeError(
            f"fanmap: {module}.{qualname} is not the function found by that name "
            "(renamed or wrapped?): workers could not find it")
    if module == "__main__":
        path = getattr(mod, "__file__", None)
        if not path:
            raise TypeError(
                f"fanmap: {qualname} is defined in an interactive session (__main__ has no "
                "file): put it in a module so that workers can import it")
        return "@" + os.path.abspath(path) + ":" + qualname
    return module + ":" + qualname


def _walk(obj, qualname):
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def load(ref):
    """Imports what `ref` names and returns it. Raises ImportError or
    AttributeError (with the reference in the message) if it cannot."""
    if ":" not in ref:
        raise ValueError(f"function reference {ref!r} is not module:qualname")
    where, qualname = ref.rsplit(":", 1)
    if where.startswith("@"):
        mod = _load_main(where[1:])
    else:
        mod = importlib.import_module(where)
    try:
        return _walk(mod, qualname)
    except AttributeError:
        raise AttributeError(f"{where} has no attribute {qualname!r}") from None


def _load_main(path):
    mod = sys.modules.get("__mp_main__")
    if mod is not None and getattr(mod, "__file__", None) == path:
        return mod
    # An explicit loader: a script need not end in ".py" (scripts/bench-python).
    loader = importlib.machinery.SourceFileLoader("__mp_main__", path)
    spec = importlib.util.spec_from_file_location("__mp_main__", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["__mp_main__"] = mod
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec.loader.exec_module(mod)
    # Pickled objects of the caller's script name their module "__main__".
    sys.modules["__main__"] = mod
    return mod
