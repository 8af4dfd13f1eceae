"""DVC versioning of training sets: commit the dvc.yaml stage that produced a dataset, push it to
the remote, and fetch any version back by the hash a model's lineage cites."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from mlops_assets.settings import Environment, Settings

STAGES = {"churn_v1": "churn_v1_dataset"}


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


def _configure(settings: Settings) -> None:
    """DVC keeps its caches in the project's data folder (not /var/tmp), and the remote follows
    the environment. Written to .dvc/config.local, which DVC keeps out of git."""
    from dvc.repo import Repo

    os.environ["DVC_SITE_CACHE_DIR"] = str(settings.data_dir / "dvc" / "site")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    with Repo(str(settings.dvc_root)) as repo, repo.config.edit("local") as local:
        local.setdefault("core", {})["site_cache_dir"] = str(settings.data_dir / "dvc" / "site")
        local.setdefault("cache", {})["dir"] = str(settings.data_dir / "dvc" / "cache")
        remotes = local.setdefault("remote", {})
        remotes.setdefault("local", {})["url"] = str(settings.data_dir / "dvc" / "remote")
        if settings.dvc_s3_url:
            remotes.setdefault("s3", {})["url"] = settings.dvc_s3_url
        local["core"]["remote"] = "s3" if settings.env is Environment.PROD else "local"


def _remote(settings: Settings) -> tuple[str, str]:
    from dvc.repo import Repo

    with Repo(str(settings.dvc_root)) as repo:
        name = repo.config["core"]["remote"]
        return name, str(repo.config["remote"][name]["url"])


def commit_and_push(settings: Settings, service: str) -> DatasetVersion:
    """Record the dataset just written for `service` in dvc.lock, cache it and push it."""
    from dvc.repo import Repo

    stage_name = STAGES.get(service)
    if stage_name is None:
        raise VersioningError(
            f"no dvc.yaml stage for feature service {service!r}; known: {sorted(STAGES)}"
        )
    _configure(settings)
    # DVC resolves targets against the working directory, as its CLI does.
    with contextlib.chdir(settings.dvc_root), Repo(str(settings.dvc_root)) as repo:
        repo.commit(stage_name, force=True)
        repo.push(targets=[stage_name])
    return current_version(settings, service)


def current_version(settings: Settings, service: str) -> DatasetVersion:
    stage_name = STAGES[service]
    lock = yaml.safe_load((settings.dvc_root / "dvc.lock").read_text())
    out = lock["stages"][stage_name]["outs"][0]
    remote, url = _remote(settings)
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
    _configure(settings)
    pulls = settings.datasets_dir / ".pulls"
    pulls.mkdir(parents=True, exist_ok=True)
    name = md5.removesuffix(".dir")
    dvcfile = pulls / f"{name}.dvc"
    dvcfile.write_text(yaml.safe_dump({"outs": [{"md5": md5, "path": name, "hash": "md5"}]}))
    try:
        with contextlib.chdir(settings.dvc_root), Repo(str(settings.dvc_root)) as repo:
            repo.pull(targets=[str(dvcfile)], force=True)
    except DvcException as err:
        raise VersioningError(f"could not pull dataset {md5}: {err}") from err
    finally:
        dvcfile.unlink(missing_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(pulls / name), dest)
    return dest
