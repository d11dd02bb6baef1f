#!/usr/bin/env python3
"""The benchmark data set, as an OCI image layout: 8 images app0..app7 sharing 3 base layers
(30, 20, 5 MiB), app4-app7 sharing a 15 MiB runtime layer, and 2-4 unique layers of 1-40 MiB each
(about 464 MiB unique, 894 MiB referenced). Layers hold seeded pseudo-random bytes, so they are
incompressible like real ones, and the same SCALE gives the same bytes.
Usage: gen-images.py LAYOUT_DIR [SCALE]"""

import hashlib, json, os, random, sys

out = sys.argv[1]
scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
MiB = 1 << 20
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)


def put(media_type, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(blobs, digest)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def layer(seed, mib):
    return put("application/vnd.oci.image.layer.v1.tar+gzip", random.Random(seed).randbytes(int(mib * MiB * scale)))


bases = [layer("base-%d" % i, size) for i, size in enumerate([30, 20, 5])]
runtime = layer("runtime", 15)
rng = random.Random("layers")
index = []
for n in range(8):
    layers = list(bases) + ([runtime] if n >= 4 else [])
    layers += [layer("app%d-%d" % (n, k), rng.choice([1, 2, 5, 8, 12, 20, 30, 40])) for k in range(2 + n % 3)]
    config = put("application/vnd.oci.image.config.v1+json", json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {"Env": ["APP=%d" % n]},
         "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}, sort_keys=True).encode())
    manifest = put("application/vnd.oci.image.manifest.v1+json", json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config,
         "layers": layers}, sort_keys=True).encode())
    manifest["annotations"] = {"org.opencontainers.image.ref.name": "app%d" % n}
    index.append(manifest)
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": index}, f)
print(json.dumps({m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index}))
