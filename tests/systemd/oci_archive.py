#!/usr/bin/env python3
"""Writes a one-layer OCI image archive (the image layout as a tar, what `ctr images import`
reads) holding one static binary at /bin/<name>: a container image without a registry.

    oci_archive.py BINARY OUT.tar
"""

import hashlib
import io
import json
import os
import platform
import sys
import tarfile

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def blob(out: tarfile.TarFile, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    add(out, f"blobs/sha256/{digest}", data)
    return f"sha256:{digest}"


def add(out: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    out.addfile(info, io.BytesIO(data))


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: oci_archive.py BINARY OUT.tar")
    binary, target = sys.argv[1], sys.argv[2]
    with open(binary, "rb") as f:
        program = f.read()
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        add(layer, f"bin/{os.path.basename(binary)}", program, 0o755)
    layer_bytes = layer_buf.getvalue()
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as out:
        layer_digest = blob(out, layer_bytes)
        config = json.dumps({
            "architecture": ARCH,
            "os": "linux",
            "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }).encode()
        config_digest = blob(out, config)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": len(layer_bytes)}],
        }).encode()
        manifest_digest = blob(out, manifest)
        add(out, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add(out, "index.json", json.dumps({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": manifest_digest, "size": len(manifest),
                           "platform": {"architecture": ARCH, "os": "linux"}}],
        }).encode())


if __name__ == "__main__":
    main()
