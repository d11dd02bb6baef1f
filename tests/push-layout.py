#!/usr/bin/env python3
"""Pushes image NAME of an OCI layout to a registry over plain http, exactly as stored: every
blob, child manifest and the root, whatever their media types (skopeo's oci: transport skips
Docker media types). Usage: push-layout.py LAYOUT NAME HOST REPOSITORY:TAG"""

import json, os, sys, urllib.request

layout, name, host, target = sys.argv[1:5]
repository, tag = target.rsplit(":", 1)
DOCUMENTS = {
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}


def blob(digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return f.read()


def request(method, url, data=None, headers=None):
    req = urllib.request.Request("http://%s%s" % (host, url), data=data, method=method, headers=headers or {})
    return urllib.request.urlopen(req)


def push(descriptor, reference):
    data = blob(descriptor["digest"])
    if descriptor["mediaType"] in DOCUMENTS:
        doc = json.loads(data)
        for child in [doc.get("config")] + (doc.get("layers") or []) + (doc.get("manifests") or []):
            if child:
                push(child, child["digest"])
        request("PUT", "/v2/%s/manifests/%s" % (repository, reference), data, {"Content-Type": descriptor["mediaType"]})
    else:
        location = request("POST", "/v2/%s/blobs/uploads/" % repository).headers["Location"]
        location = location.split(host, 1)[-1]
        sep = "&" if "?" in location else "?"
        request("PUT", "%s%sdigest=%s" % (location, sep, descriptor["digest"]), data,
                {"Content-Type": "application/octet-stream"})


index = json.load(open(os.path.join(layout, "index.json")))
root = next(d for d in index["manifests"] if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == name)
push(root, tag)
