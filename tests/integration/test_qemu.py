"""QEMU's iSCSI block driver (libiscsi inside qemu-img) moving real data through the gateway.

* a 256 MiB random image copied onto the LUN and back is byte-identical, without digests and
  with CRC32C header digests (QEMU/libiscsi never offer DataDigest=CRC32C: see test_digests.py);
* an ext4 filesystem image copied onto the LUN and back passes ``e2fsck -fn`` and keeps its files.

QEMU 7.2 segfaults on libiscsi's ``?header_digest=`` URL argument, so digests are requested with
``--image-opts``/``--target-image-opts`` (``Gateway.qemu_opts``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from integration.harness import Gateway, require_tool, run_tool

MiB = 1 << 20
COPY_TIMEOUT = 300.0


def sha256_file(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as f:
        while True:
            n = 4 * MiB if left is None else min(4 * MiB, left)
            if n == 0:
                break
            chunk = f.read(n)
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(size // (4 * MiB)):
            f.write(os.urandom(4 * MiB))
        f.write(os.urandom(size % (4 * MiB)))
    return path


def upload(gw: Gateway, src: Path, header_digest: str | None = None) -> None:
    """qemu-img convert SRC onto the LUN (``-n``: the LUN exists; the tail beyond SRC is kept)."""
    res = run_tool(
        [
            "qemu-img",
            "convert",
            "-n",
            "-f",
            "raw",
            str(src),
            "--target-image-opts",
            gw.qemu_opts(header_digest=header_digest),
        ],
        timeout=COPY_TIMEOUT,
    )
    assert res.returncode == 0, res.describe()


def download(gw: Gateway, dst: Path, size: int, header_digest: str | None = None) -> None:
    """qemu-img convert the first ``size`` bytes of the LUN into a raw file."""
    res = run_tool(
        [
            "qemu-img",
            "convert",
            "-O",
            "raw",
            "--image-opts",
            gw.qemu_opts(header_digest=header_digest, size=size),
            str(dst),
        ],
        timeout=COPY_TIMEOUT,
    )
    assert res.returncode == 0, res.describe()
    assert dst.stat().st_size == size


@pytest.fixture(scope="module")
def random_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_file(tmp_path_factory.mktemp("img") / "random.img", 256 * MiB)


@pytest.mark.parametrize("header_digest", [None, "crc32c"], ids=["no-digest", "header-crc32c"])
def test_random_image_roundtrip(
    gateway: Gateway, random_image: Path, tmp_path: Path, header_digest: str | None
) -> None:
    require_tool("qemu-img")
    size = random_image.stat().st_size
    upload(gateway, random_image, header_digest)
    back = tmp_path / "back.img"
    download(gateway, back, size, header_digest)
    assert sha256_file(back) == sha256_file(random_image), "data read back differs"
    # and the bytes really are in the backing file of the demo LUN
    assert sha256_file(gateway.disk_path, size) == sha256_file(random_image)


def test_qemu_url_form_with_credentials(gateway: Gateway, tmp_path: Path) -> None:
    """The URL the gateway prints works as is for qemu-img (user%password@ form)."""
    require_tool("qemu-img")
    src = random_file(tmp_path / "small.img", 4 * MiB)
    res = run_tool(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), gateway.url])
    assert res.returncode == 0, res.describe()
    info = run_tool(["qemu-img", "info", "--output=json", gateway.url], check=True)
    assert '"virtual-size": 1073741824' in info.stdout, info.describe()
    assert sha256_file(gateway.disk_path, 4 * MiB) == sha256_file(src)


def test_qemu_wrong_password_fails(gateway: Gateway, tmp_path: Path) -> None:
    require_tool("qemu-img")
    src = random_file(tmp_path / "small.img", MiB)
    res = run_tool(
        [
            "qemu-img",
            "convert",
            "-n",
            "-f",
            "raw",
            "-O",
            "raw",
            str(src),
            gateway.lun_url(password=gateway.password + "x"),
        ]
    )
    assert res.returncode != 0, res.describe()
    assert "Authentication failure" in res.output, res.describe()


def make_ext4_image(path: Path, tree: Path) -> dict[str, str]:
    """A 64 MiB ext4 image populated from ``tree`` (mke2fs -d); returns {name: sha256}."""
    tree.mkdir()
    (tree / "hello.txt").write_text("hello from iscsigw\n")
    (tree / "sub").mkdir()
    files = {"hello.txt": tree / "hello.txt"}
    for i in range(4):
        p = tree / "sub" / f"blob{i}.bin"
        p.write_bytes(os.urandom((i + 1) * 1536 * 1024 + 123))
        files[f"sub/blob{i}.bin"] = p
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
    run_tool(["mke2fs", "-q", "-t", "ext4", "-F", "-d", str(tree), str(path)], check=True)
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in files.items()}


def test_ext4_image_roundtrip_fsck(gateway: Gateway, tmp_path: Path) -> None:
    for tool in ("qemu-img", "mke2fs", "e2fsck", "debugfs"):
        require_tool(tool)
    fs = tmp_path / "fs.img"
    expected = make_ext4_image(fs, tmp_path / "tree")
    upload(gateway, fs)
    back = tmp_path / "fs-back.img"
    download(gateway, back, fs.stat().st_size)
    fsck = run_tool(["e2fsck", "-fn", str(back)])
    assert fsck.returncode == 0, fsck.describe()
    for name, digest in expected.items():
        out = tmp_path / "dump.bin"
        out.unlink(missing_ok=True)
        run_tool(["debugfs", "-R", f"dump /{name} {out}", str(back)], check=True)
        assert out.exists(), f"{name} missing from the filesystem read back"
        assert hashlib.sha256(out.read_bytes()).hexdigest() == digest, f"{name} differs"
    assert sha256_file(back) == sha256_file(fs)
