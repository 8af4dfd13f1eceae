"""DVC versioning of training sets: commit the dvc.yaml stage that produced a dataset, push it to
the remote, and fetch any version back by the hash a model's lineage cites.

Which DVC project versions a data folder's training sets (`dvc_root`):
- `MLOPS_DVC_ROOT` when set: an existing DVC project, used as it is;
- the repository itself (`dvc.yaml`, `dvc.lock` tracked by git, outputs in `datasets/`) for the
  default data folder `./data`: `make demo` then leaves `dvc.lock` as committed when the data are
  the same, and `dvc status` / `dvc pull` work in the checkout;
- otherwise the data folder itself, made a DVC project (no git) on first use, with a `dvc.yaml`
  generated from the repository's (same stages, paths resolved from the data folder) and outputs in
  `<data folder>/datasets/`: tests, benchmarks and second worlds never touch the tracked files.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from mlops_assets.settings import PROJECT_ROOT, Settings


def stage_for(service: str) -> str:
    """The dvc.yaml stage that builds a feature service's training set (a naming convention)."""
    return f"{service}_dataset"


def _stages(root: Path) -> list[str]:
    path = root / "dvc.yaml"
    return sorted(yaml.safe_load(path.read_text()).get("stages", {})) if path.exists() else []


DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
GENERATED = "Generated from {source} for this data folder (mlops_assets/datasets/versioning.py)."


class VersioningError(RuntimeError):
    pass


@dataclass(frozen=True)
class DatasetVersion:
    stage: str
    path: str  # relative to the DVC root
    md5: str  # DVC directory hash, e.g. "3f2a...c1.dir"
    files: int
    size: int
    remote: str
    remote_url: str

    def metadata(self) -> dict[str, object]:
        return {
            "dvc_stage": self.stage,
            "dvc_path": self.path,
            "dvc_md5": self.md5,
            "dvc_files": self.files,
            "dvc_size_bytes": self.size,
            "dvc_remote": self.remote,
            "dvc_remote_url": self.remote_url,
            "dvc_pull": f"mlops dataset pull {self.md5}",
        }


def _is_default_data_dir(settings: Settings) -> bool:
    return settings.data_dir.resolve() == DEFAULT_DATA_DIR.resolve()


def dvc_root(settings: Settings) -> Path:
    """The DVC project that versions this data folder's training sets (see the module doc)."""
    return settings.dvc_root.resolve()


def datasets_dir(settings: Settings) -> Path:
    """Where the training sets (the stages' outputs) of this data folder are written."""
    return dvc_root(settings) / "datasets"


def _write_if_changed(path: Path, text: str) -> None:
    """Atomic, and only on change: concurrent runs read the old file or the new one."""
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; these are ordinary project files
    os.replace(tmp, path)


def _data_path(settings: Settings, path: str) -> str:
    """A path of the repository's dvc.yaml as seen from a data-folder project: the data folder's
    own files relative to it (gold's on S3 where dbt writes them there), the repository's files
    (feature_repo/...) absolute."""
    prefix = f"{DEFAULT_DATA_DIR.name}/"
    gold = f"{prefix}gold/"
    if path.startswith(gold) and "://" in settings.gold_uri:
        return f"{settings.gold_uri}/{path.removeprefix(gold)}"
    if path.startswith(prefix):
        return path.removeprefix(prefix)
    return str(PROJECT_ROOT / path)


def _generated_pipeline(settings: Settings) -> str:
    """The repository's dvc.yaml for the data folder `settings.data_dir`: the same stages and
    outputs, dependencies resolved from there, and the command pointed at this data folder."""
    data = settings.data_dir.resolve()
    spec = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    env = (
        f"MLOPS_ENV={settings.env.value} MLOPS_DATA_DIR={shlex.quote(str(data))} "
        f"MLOPS_DVC_ROOT={shlex.quote(str(data))}"
    )
    for stage in spec["stages"].values():
        stage["cmd"] = f"{env} {stage['cmd']}"
        stage["deps"] = [_data_path(settings, d) for d in stage.get("deps", [])]
    header = f"# {GENERATED.format(source=PROJECT_ROOT / 'dvc.yaml')}\n"
    return header + yaml.safe_dump(spec, sort_keys=False, width=1_000)


def _generated_config(root: Path) -> str:
    """The repository's .dvc/config for a data-folder project: the same remotes and options,
    with the paths that point into ./data pointing into this data folder (relative to .dvc/)."""
    from configobj import ConfigObj

    config = ConfigObj(str(PROJECT_ROOT / ".dvc" / "config"))
    prefix = f"../{DEFAULT_DATA_DIR.name}/"

    def rebase(section) -> None:
        for key, value in section.items():
            if isinstance(value, dict):
                rebase(value)
            elif isinstance(value, str) and value.startswith(prefix):
                section[key] = "../" + value.removeprefix(prefix)

    rebase(config)
    config.setdefault("core", {})["no_scm"] = "true"  # a data folder is not a git checkout
    config.filename = None
    config.initial_comment = [f"# {GENERATED.format(source=PROJECT_ROOT / '.dvc' / 'config')}"]
    return "\n".join(config.write()) + "\n"


def _ensure_data_project(settings: Settings, root: Path) -> None:
    """Make the data folder a DVC project (once) and keep its generated files current."""
    from dvc.exceptions import InitError
    from dvc.repo import Repo

    if not (root / ".dvc").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        try:
            Repo.init(str(root), no_scm=True).close()
        except InitError:
            if not (root / ".dvc").is_dir():  # not a concurrent init: a real failure
                raise
    _write_if_changed(root / ".dvc" / "config", _generated_config(root))
    _write_if_changed(root / "dvc.yaml", _generated_pipeline(settings))
    # DVC walks the project for dvc.yaml files: it needs the gold tables and the datasets only,
    # not landing data, warehouses or instances.
    keep = sorted(
        {"dvc.yaml", "dvc.lock", "datasets"}
        | {
            p.split("/")[0]
            for stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values()
            for p in [*stage.get("deps", []), *stage.get("outs", [])]
            if not Path(p).is_absolute() and "://" not in p
        }
    )
    _write_if_changed(
        root / ".dvcignore",
        f"# {GENERATED.format(source='the stages of dvc.yaml')}\n/*\n"
        + "".join(f"!/{name}\n" for name in keep),
    )


def _configure(settings: Settings) -> Path:
    """The DVC project of this data folder (created if it is the data folder's own), with its
    caches in the data folder (not /var/tmp) and the remote following the environment. Machine
    paths go to .dvc/config.local, which DVC keeps out of git. Returns the project's root."""
    from dvc.repo import Repo

    root = dvc_root(settings)
    own_project = settings.on_services or not _is_default_data_dir(settings)
    if root == settings.data_dir.resolve() and own_project:
        _ensure_data_project(settings, root)
    site = str(settings.data_dir.resolve() / "dvc" / "site")
    os.environ["DVC_SITE_CACHE_DIR"] = site
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    with Repo(str(root)) as repo, repo.config.edit("local") as local:
        local.setdefault("core", {})["site_cache_dir"] = site
        local.setdefault("cache", {})["dir"] = str(settings.data_dir.resolve() / "dvc" / "cache")
        remotes = local.setdefault("remote", {})
        remotes.setdefault("local", {})["url"] = str(settings.data_dir.resolve() / "dvc" / "remote")
        if settings.dvc_s3_remote_url:
            remotes.setdefault("s3", {})["url"] = settings.dvc_s3_remote_url
            endpoint = settings.s3_env().get("AWS_ENDPOINT_URL")
            if endpoint:  # an S3 that is not AWS (SeaweedFS on the services profile)
                remotes["s3"]["endpointurl"] = endpoint
        local["core"]["remote"] = settings.dvc_remote_name
    return root


def _remote(root: Path) -> tuple[str, str]:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        name = repo.config["core"]["remote"]
        return name, str(repo.config["remote"][name]["url"])


def commit_and_push(settings: Settings, service: str) -> DatasetVersion:
    """Record the dataset just written for `service` in dvc.lock, cache it and push it."""
    from dvc.repo import Repo

    root = _configure(settings)
    stage_name = stage_for(service)
    if stage_name not in _stages(root):
        raise VersioningError(
            f"no dvc.yaml stage {stage_name!r} for feature service {service!r} in {root}; "
            f"known: {_stages(root)}"
        )
    # DVC resolves targets against the working directory, as its CLI does.
    with contextlib.chdir(root), Repo(str(root)) as repo:
        repo.commit(stage_name, force=True)
        repo.push(targets=[stage_name])
    return current_version(settings, service)


def current_version(settings: Settings, service: str) -> DatasetVersion:
    stage_name = stage_for(service)
    root = dvc_root(settings)
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    out = lock["stages"][stage_name]["outs"][0]
    remote, url = _remote(root)
    return DatasetVersion(
        stage=stage_name,
        path=out["path"],
        md5=out["md5"],
        files=int(out.get("nfiles", 0)),
        size=int(out.get("size", 0)),
        remote=remote,
        remote_url=url,
    )


def pull(settings: Settings, md5: str, dest: Path) -> Path:
    """Fetch dataset version `md5` from the remote into `dest` (replaced). DVC re-hashes what it
    downloads (remote `verify`), so a corrupted object fails here instead of being used."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    if not md5.endswith(".dir"):
        md5 = f"{md5}.dir"
    root = _configure(settings)
    pulls = root / "datasets" / ".pulls"
    pulls.mkdir(parents=True, exist_ok=True)
    name = md5.removesuffix(".dir")
    dvcfile = pulls / f"{name}.dvc"
    dvcfile.write_text(yaml.safe_dump({"outs": [{"md5": md5, "path": name, "hash": "md5"}]}))
    try:
        with contextlib.chdir(root), Repo(str(root)) as repo:
            repo.pull(targets=[str(dvcfile)], force=True)
    except DvcException as err:
        raise VersioningError(f"could not pull dataset {md5}: {err}") from err
    finally:
        dvcfile.unlink(missing_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(pulls / name), dest)
    return dest
