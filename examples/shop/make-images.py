#!/usr/bin/env python3
"""Writes the example's two images into an OCI image layout: `installer` (one platform: Debian's
static busybox as its shell and tools, and the run tool in examples/shop/installer/run) and `web`
(an index over linux/amd64 and linux/arm64), sharing a base layer. Deterministic for a given
busybox. Usage: make-images.py LAYOUT_DIR [BUSYBOX]"""

import gzip, hashlib, io, json, os, sys, tarfile

out = sys.argv[1]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)


def put(media_type, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def layer(name, size, seed):
    content = hashlib.sha256(seed.encode()).digest() * (size // 32)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(content), 0
        t.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def installer_layer(busybox):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        def add(name, data=None, mode=0o755, kind=tarfile.REGTYPE, link=""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
            info.size = len(data) if data is not None else 0
            t.addfile(info, io.BytesIO(data) if data is not None else None)
        for d in ["bin", "cnab", "cnab/app", "tmp"]:
            add(d, kind=tarfile.DIRTYPE)
        add("bin/busybox", open(busybox, "rb").read())
        for tool in ["sh", "cat", "tr", "sed", "grep", "du", "cut", "sha256sum"]:
            add("bin/" + tool, kind=tarfile.SYMTYPE, link="busybox", mode=0o777)
        add("cnab/app/run", open(os.path.join(os.path.dirname(__file__), "installer", "run"), "rb").read())
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def image(arch, layers, config=None):
    diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(l)).hexdigest() for l in layers]
    document = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    if config:
        document["config"] = config
    config = put("application/vnd.oci.image.config.v1+json", json.dumps(document, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config,
                "layers": [put("application/vnd.oci.image.layer.v1.tar+gzip", l) for l in layers]}
    return put(manifest["mediaType"], json.dumps(manifest, sort_keys=True).encode())


base = layer("base.bin", 2 << 20, "base")
busybox = sys.argv[2] if len(sys.argv) > 2 else "/bin/busybox"
installer = image("amd64", [base, installer_layer(busybox)],
                  {"Env": ["PATH=/bin"], "Entrypoint": ["/cnab/app/run"]})
installer["annotations"] = {"org.opencontainers.image.ref.name": "installer"}
platforms = []
for arch in ["amd64", "arm64"]:
    m = image(arch, [base, layer("web.bin", 1 << 20, "web-" + arch)])
    m["platform"] = {"os": "linux", "architecture": arch}
    platforms.append(m)
web = put("application/vnd.oci.image.index.v1+json", json.dumps(
    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": platforms},
    sort_keys=True).encode())
web["annotations"] = {"org.opencontainers.image.ref.name": "web"}
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": [installer, web]}, f)
print(json.dumps({"installer": installer["digest"], "web": web["digest"]}))
