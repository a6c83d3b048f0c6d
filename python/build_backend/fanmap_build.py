"""A PEP 517 build backend for this pure-Python package, standard library only.

Why not setuptools: the setuptools that Debian 12 and Python 3.11 ship (65,
66) builds wheels only with the separate `wheel` package, which neither a
fresh venv nor a pyenv Python has, and `pip install --no-index
--no-build-isolation ./python` must work offline everywhere. A wheel of
pure-Python files is a zip with three metadata files: written here.
"""
import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "fanmap"


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("[project]", 1)[1].split("\n[", 1)[0]
    fields = dict(re.findall(r'^(\w[\w-]*)\s*=\s*"([^"]*)"', table, re.M))
    return fields["name"], fields["version"], fields.get("description", ""), \
        fields.get("requires-python", "")


def _metadata():
    name, version, summary, requires = _project()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             f"Summary: {summary}"]
    if requires:
        lines.append(f"Requires-Python: {requires}")
    return name, version, "\n".join(lines) + "\n"


def _sources():
    for directory, dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                yield os.path.relpath(path, ROOT).replace(os.sep, "/"), path


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    name, version, metadata = _metadata()
    dist_info = f"{name}-{version}.dist-info"
    os.makedirs(os.path.join(metadata_directory, dist_info), exist_ok=True)
    with open(os.path.join(metadata_directory, dist_info, "METADATA"), "w") as f:
        f.write(metadata)
    return dist_info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name, version, metadata = _metadata()
    dist_info = f"{name}-{version}.dist-info"
    filename = f"{name}-{version}-py3-none-any.whl"
    record = []

    def add(zf, arcname, data):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{arcname},sha256={digest.decode()},{len(data)}")
        zf.writestr(zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0)), data,
                    compress_type=zipfile.ZIP_DEFLATED)

    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as zf:
        for arcname, path in _sources():
            with open(path, "rb") as f:
                add(zf, arcname, f.read())
        add(zf, f"{dist_info}/METADATA", metadata.encode())
        add(zf, f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: fanmap_build\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n")
        record.append(f"{dist_info}/RECORD,,")
        zf.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return filename


def build_sdist(sdist_directory, config_settings=None):
    name, version, metadata = _metadata()
    base = f"{name}-{version}"
    filename = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as tar:
        files = [("pyproject.toml", os.path.join(ROOT, "pyproject.toml")),
                 ("README.md", os.path.join(ROOT, "README.md")),
                 ("build_backend/fanmap_build.py", os.path.abspath(__file__))]
        for arcname, path in files + list(_sources()):
            tar.add(path, arcname=f"{base}/{arcname}")
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        data = metadata.encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return filename
