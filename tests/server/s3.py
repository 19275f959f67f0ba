"""Drive the S3 gateway with real clients (boto3, s3fs/fsspec, the AWS CLI) as ML tooling would.

Run by tests/server/s3.sh, which starts `mvault server --s3-listen`, makes the tenants and keys, and after
this script snapshots the bucket and restores it. Inputs come from the environment (see s3.sh); the keys of
the objects the training loop left, with their SHA-256, are written to $S3_MANIFEST for that check.
Every check raises on failure; the script exits non-zero with the first one that failed.
"""

import hashlib
import http.client
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.parse

import boto3
import numpy as np
import requests
import s3fs
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

URL = os.environ["S3_URL"]
CA = os.environ["S3_CA"]
KEYS = json.loads(os.environ["S3_KEYS"])  # name -> [access key id, secret]
MANIFEST = os.environ["S3_MANIFEST"]
BIG = int(os.environ.get("S3_BIG_BYTES", str(1 << 30)))
WORK = os.environ["S3_WORK"]


def ok(msg):
    print(f"ok: {msg}", flush=True)


def client(name, secret=None, retries=3):
    ak, sk = KEYS[name] if name in KEYS else (name, "x" * 64)
    return boto3.client(
        "s3",
        endpoint_url=URL,
        aws_access_key_id=ak,
        aws_secret_access_key=secret or sk,
        region_name="us-east-1",
        verify=CA,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": retries, "mode": "standard"}),
    )


def fails(code, f, *args, **kw):
    """f(*args) must fail with S3 error `code`; returns the error message."""
    try:
        f(*args, **kw)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {e}"
        return e.response["Error"].get("Message", "")
    raise AssertionError(f"expected {code}, the call succeeded")


def sha(b):
    return hashlib.sha256(b).hexdigest()


def safetensors(step, n=200_000, seed=7):
    """A small BF16 checkpoint: two tensors, the second nudged by the step (frozen first layer)."""
    rng = np.random.default_rng(seed)
    frozen = (rng.standard_normal(n).astype(np.float32) * 0.02).view(np.uint32) >> 16
    moving = rng.standard_normal(n).astype(np.float32) * 0.02
    moving += np.random.default_rng(seed + step).standard_normal(n).astype(np.float32) * 2e-4
    moving = moving.view(np.uint32) >> 16
    data = frozen.astype(np.uint16).tobytes() + moving.astype(np.uint16).tobytes()
    header = {
        "layers.0.weight": {"dtype": "BF16", "shape": [n], "data_offsets": [0, 2 * n]},
        "layers.1.weight": {"dtype": "BF16", "shape": [n], "data_offsets": [2 * n, 4 * n]},
        "__metadata__": {"step": str(step)},
    }
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def basics(a):
    a.create_bucket(Bucket="ckpts")
    fails("BucketAlreadyOwnedByYou", a.create_bucket, Bucket="ckpts")
    fails("InvalidBucketName", a.create_bucket, Bucket="Bad_Name")
    assert [b["Name"] for b in a.list_buckets()["Buckets"]] == ["ckpts"]
    body = os.urandom(3_000_000)
    r = a.put_object(Bucket="ckpts", Key="data/x.bin", Body=body, ContentType="application/x-test",
                     Metadata={"step": "3", "owner": "ml"})
    assert r["ETag"] == f'"{hashlib.md5(body).hexdigest()}"', r["ETag"]
    g = a.get_object(Bucket="ckpts", Key="data/x.bin")
    assert g["Body"].read() == body and g["Metadata"] == {"step": "3", "owner": "ml"}
    assert g["ContentType"] == "application/x-test" and g["ContentLength"] == len(body)
    h = a.head_object(Bucket="ckpts", Key="data/x.bin")
    assert h["ContentLength"] == len(body) and h["ETag"] == r["ETag"]
    for rng, want in [("bytes=0-0", body[:1]), ("bytes=100-1048675", body[100:1048676]),
                      ("bytes=2999990-", body[2999990:]), ("bytes=-5", body[-5:]),
                      ("bytes=2000000-9999999", body[2000000:])]:
        got = a.get_object(Bucket="ckpts", Key="data/x.bin", Range=rng)
        assert got["Body"].read() == want, rng
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    fails("InvalidRange", a.get_object, Bucket="ckpts", Key="data/x.bin", Range="bytes=3000000-")
    fails("NoSuchKey", a.get_object, Bucket="ckpts", Key="data/none")
    fails("NoSuchBucket", a.get_object, Bucket="nobucket", Key="x")
    # A body that does not match its Content-MD5 is refused and leaves nothing.
    md5 = "AAAAAAAAAAAAAAAAAAAAAA=="
    fails("BadDigest", a.put_object, Bucket="ckpts", Key="data/bad", Body=b"hello", ContentMD5=md5)
    fails("NoSuchKey", a.get_object, Bucket="ckpts", Key="data/bad")
    ok("put/get/head/ranges/metadata/ETag as MD5; bad range 416; bad Content-MD5 refused")

    # Listing: prefix, delimiter, pagination.
    keys = [f"many/{i:03d}" for i in range(25)] + ["many/sub/a", "many/sub/b", "other/z"]
    for k in keys:
        a.put_object(Bucket="ckpts", Key=k, Body=k.encode())
    seen, token, pages = [], None, 0
    while True:
        kw = {"Bucket": "ckpts", "Prefix": "many/", "MaxKeys": 7}
        if token:
            kw["ContinuationToken"] = token
        r = a.list_objects_v2(**kw)
        pages += 1
        seen += [o["Key"] for o in r.get("Contents", [])]
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert seen == sorted(k for k in keys if k.startswith("many/")) and pages == 4, (pages, seen)
    r = a.list_objects_v2(Bucket="ckpts", Prefix="many/", Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["many/sub/"] and len(r["Contents"]) == 25
    pag = a.get_paginator("list_objects_v2").paginate(Bucket="ckpts", Delimiter="/", PaginationConfig={"PageSize": 1})
    tops = [p["Prefix"] for page in pag for p in page.get("CommonPrefixes", [])]
    assert tops == ["data/", "many/", "other/"], tops
    v1 = a.list_objects(Bucket="ckpts", Prefix="other/")
    assert [o["Key"] for o in v1["Contents"]] == ["other/z"]
    ok("ListObjectsV2 prefix/delimiter/pagination (4 pages of 7), v1 listing")

    # Copy (metadata copied, or replaced), delete, versions.
    a.copy_object(Bucket="ckpts", Key="data/y.bin", CopySource={"Bucket": "ckpts", "Key": "data/x.bin"})
    assert a.get_object(Bucket="ckpts", Key="data/y.bin")["Body"].read() == body
    assert a.head_object(Bucket="ckpts", Key="data/y.bin")["Metadata"] == {"step": "3", "owner": "ml"}
    a.copy_object(Bucket="ckpts", Key="data/y.bin", CopySource={"Bucket": "ckpts", "Key": "data/y.bin"},
                  MetadataDirective="REPLACE", Metadata={"new": "1"})
    assert a.head_object(Bucket="ckpts", Key="data/y.bin")["Metadata"] == {"new": "1"}
    first = a.put_object(Bucket="ckpts", Key="data/v.bin", Body=b"version one")["VersionId"]
    a.put_object(Bucket="ckpts", Key="data/v.bin", Body=b"version two")
    assert a.get_object(Bucket="ckpts", Key="data/v.bin")["Body"].read() == b"version two"
    assert a.get_object(Bucket="ckpts", Key="data/v.bin", VersionId=first)["Body"].read() == b"version one"
    a.delete_object(Bucket="ckpts", Key="data/v.bin")
    fails("NoSuchKey", a.get_object, Bucket="ckpts", Key="data/v.bin")
    vs = a.list_object_versions(Bucket="ckpts", Prefix="data/v.bin")
    assert len(vs["Versions"]) == 2 and len(vs["DeleteMarkers"]) == 1 and vs["DeleteMarkers"][0]["IsLatest"]
    assert a.get_object(Bucket="ckpts", Key="data/v.bin", VersionId=first)["Body"].read() == b"version one"
    r = a.delete_objects(Bucket="ckpts", Delete={"Objects": [{"Key": k} for k in keys[:5]]})
    assert len(r["Deleted"]) == 5 and not r.get("Errors")
    assert a.list_objects_v2(Bucket="ckpts", Prefix="many/0")["KeyCount"] == 20
    fails("BucketNotEmpty", a.delete_bucket, Bucket="ckpts")
    for k in ("vp/a", "vp/b", "vp/c"):
        a.put_object(Bucket="ckpts", Key=k, Body=b"1")
        a.put_object(Bucket="ckpts", Key=k, Body=b"2")
    got, marker = [], None
    while True:
        kw = {"Bucket": "ckpts", "Prefix": "vp/", "MaxKeys": 3}
        if marker:
            kw["KeyMarker"], kw["VersionIdMarker"] = marker
        r = a.list_object_versions(**kw)
        got += [(v["Key"], v["IsLatest"]) for v in r.get("Versions", [])]
        if not r["IsTruncated"]:
            break
        marker = (r["NextKeyMarker"], r["NextVersionIdMarker"])
    assert sorted(got) == [(k, b) for k in ("vp/a", "vp/b", "vp/c") for b in (False, True)], got
    ok("copy (shared bytes, COPY/REPLACE metadata), overwrite keeps the old version, delete markers, "
       "GetObject by version, DeleteObjects, non-empty bucket kept")
    return body


def status_of(f, *args, **kw):
    """The HTTP status f(*args) fails with (304 and 412 carry no S3 error body worth matching on)."""
    try:
        f(*args, **kw)
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("expected a failure, the call succeeded")


def no_wrong_success(a):
    """Issue 19: every request is honoured exactly or refused, before anything is stored."""
    b = "ckpts"
    # What the gateway does not do is refused by name, and nothing is stored.
    refused = [
        ("SSE-C", dict(SSECustomerAlgorithm="AES256", SSECustomerKey="k" * 32)),
        ("aws:kms", dict(ServerSideEncryption="aws:kms")),
        ("tagging", dict(Tagging="a=b")),
        ("public-read", dict(ACL="public-read")),
        ("object lock", dict(ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate="2099-01-01T00:00:00Z")),
    ]
    for what, kw in refused:
        msg = fails("NotImplemented", a.put_object, Bucket=b, Key="nws/refused", Body=b"x", **kw)
        assert what in msg, (what, msg)
        assert status_of(a.head_object, Bucket=b, Key="nws/refused") == 404
    fails("InvalidStorageClass", a.put_object, Bucket=b, Key="nws/refused", Body=b"x", StorageClass="GLACIER")
    fails("NotImplemented", a.create_bucket, Bucket="locked-bucket", ObjectLockEnabledForBucket=True)
    assert "locked-bucket" not in [x["Name"] for x in a.list_buckets()["Buckets"]]
    fails("NotImplemented", a.create_multipart_upload, Bucket=b, Key="nws/refused", Tagging="a=b")
    # What it does is done: SSE-S3 (AES256 at rest, which every object has) and a private ACL.
    r = a.put_object(Bucket=b, Key="nws/sse", Body=b"x", ServerSideEncryption="AES256", ACL="private")
    assert r.get("ServerSideEncryption") == "AES256", r
    assert a.get_object(Bucket=b, Key="nws/sse").get("ServerSideEncryption") == "AES256"
    r = a.copy_object(Bucket=b, Key="nws/sse-copy", CopySource={"Bucket": b, "Key": "nws/sse"},
                      ServerSideEncryption="AES256")
    assert a.head_object(Bucket=b, Key="nws/sse-copy").get("ServerSideEncryption") == "AES256", r
    # encryption headers on a read are refused, not ignored
    sse_get = client("a-writer")
    sse_get.meta.events.register("before-call.s3.GetObject",
                                 lambda **kw: kw["params"]["headers"].update({"x-amz-server-side-encryption": "aws:kms"}))
    assert status_of(sse_get.get_object, Bucket=b, Key="nws/sse") == 400
    ok("no wrong success: SSE-C, SSE-KMS, tags, public ACLs, object lock, GLACIER refused; nothing stored")

    # Checksums: a wrong one is BadDigest and stores nothing; a right one is kept and returned.
    fails("BadDigest", a.put_object, Bucket=b, Key="nws/sum", Body=b"hello world", ChecksumCRC32="AAAAAA==")
    fails("BadDigest", a.put_object, Bucket=b, Key="nws/sum", Body=b"hello world",
          ChecksumSHA256="uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzeK=")
    assert status_of(a.head_object, Bucket=b, Key="nws/sum") == 404
    r = a.put_object(Bucket=b, Key="nws/sum", Body=b"hello world", ChecksumAlgorithm="SHA256")
    want = "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
    assert r.get("ChecksumSHA256") == want, r
    h = a.head_object(Bucket=b, Key="nws/sum", ChecksumMode="ENABLED")
    assert h.get("ChecksumSHA256") == want, h
    g = a.get_object(Bucket=b, Key="nws/sum", ChecksumMode="ENABLED")
    assert g["Body"].read() == b"hello world" and g.get("ChecksumSHA256") == want, g
    r = a.put_object(Bucket=b, Key="nws/crc", Body=b"hello world", ChecksumCRC32="DUoRhQ==")
    assert a.head_object(Bucket=b, Key="nws/crc", ChecksumMode="ENABLED").get("ChecksumCRC32") == "DUoRhQ=="
    at = a.get_object_attributes(Bucket=b, Key="nws/crc", ObjectAttributes=["ETag", "Checksum", "ObjectSize"])
    assert at["Checksum"]["ChecksumCRC32"] == "DUoRhQ==" and at["ObjectSize"] == 11, at
    # A multipart object's checksum is the composite of its parts' (ceph/s3-tests' values: one 1 KiB part of 'A')
    up = a.create_multipart_upload(Bucket=b, Key="nws/mpsum", ChecksumAlgorithm="SHA256")
    assert up["ChecksumAlgorithm"] == "SHA256" and up["ChecksumType"] == "COMPOSITE", up
    fails("NotImplemented", a.create_multipart_upload, Bucket=b, Key="nws/full", ChecksumAlgorithm="CRC32",
          ChecksumType="FULL_OBJECT")
    p = a.upload_part(Bucket=b, Key="nws/mpsum", UploadId=up["UploadId"], PartNumber=1, Body=b"A" * 1024,
                      ChecksumSHA256="arcu6553sHVAiX4MjW0j7I7vD4w6R+Gz9Ok0Q9lTa+0=")
    assert p["ChecksumSHA256"] == "arcu6553sHVAiX4MjW0j7I7vD4w6R+Gz9Ok0Q9lTa+0=", p
    part = {"ETag": p["ETag"], "ChecksumSHA256": p["ChecksumSHA256"], "PartNumber": 1}
    fails("BadDigest", a.complete_multipart_upload, Bucket=b, Key="nws/mpsum", UploadId=up["UploadId"],
          ChecksumSHA256="bad", MultipartUpload={"Parts": [part]})
    composite = "Ok6Cs5b96ux6+MWQkJO7UBT5sKPBeXBLwvj/hK89smg=-1"
    r = a.complete_multipart_upload(Bucket=b, Key="nws/mpsum", UploadId=up["UploadId"], ChecksumSHA256=composite,
                                    MultipartUpload={"Parts": [part]})
    assert r["ChecksumSHA256"] == composite, r
    assert a.head_object(Bucket=b, Key="nws/mpsum", ChecksumMode="ENABLED")["ChecksumSHA256"] == composite
    ok("checksums: wrong CRC32 / SHA-256 refused (BadDigest, nothing stored); right ones kept and returned; "
       "multipart composites")

    # Conditional requests.
    etag = a.put_object(Bucket=b, Key="nws/cond", Body=b"v1")["ETag"]
    fails("PreconditionFailed", a.put_object, Bucket=b, Key="nws/cond", Body=b"v2", IfNoneMatch="*")
    assert a.get_object(Bucket=b, Key="nws/cond")["Body"].read() == b"v1"
    a.put_object(Bucket=b, Key="nws/new", Body=b"n", IfNoneMatch="*")
    fails("PreconditionFailed", a.put_object, Bucket=b, Key="nws/cond", Body=b"v2", IfNoneMatch=etag)
    assert a.get_object(Bucket=b, Key="nws/cond")["Body"].read() == b"v1"
    try:
        a.get_object(Bucket=b, Key="nws/cond", IfNoneMatch=etag)
        raise AssertionError("If-None-Match with the current ETag was served")
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 304, e.response
        assert e.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag, e.response
    assert status_of(a.head_object, Bucket=b, Key="nws/cond", IfMatch='"00"') == 412
    assert a.get_object(Bucket=b, Key="nws/cond", IfMatch=etag)["Body"].read() == b"v1"
    assert status_of(a.get_object, Bucket=b, Key="nws/cond",
                     IfModifiedSince=a.head_object(Bucket=b, Key="nws/cond")["LastModified"]) == 304
    fails("PreconditionFailed", a.put_object, Bucket=b, Key="nws/cond", Body=b"v2", IfMatch='"00"')
    etag2 = a.put_object(Bucket=b, Key="nws/cond", Body=b"v2", IfMatch=etag)["ETag"]
    fails("PreconditionFailed", a.delete_object, Bucket=b, Key="nws/cond", IfMatch=etag)
    assert a.get_object(Bucket=b, Key="nws/cond")["Body"].read() == b"v2"
    a.delete_object(Bucket=b, Key="nws/cond", IfMatch=etag2)
    fails("NoSuchKey", a.get_object, Bucket=b, Key="nws/cond")
    try:
        a.head_object(Bucket=b, Key="nws/cond")
        raise AssertionError("a deleted key was found")
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "true", e.response
    fails("PreconditionFailed", a.copy_object, Bucket=b, Key="nws/copy", CopySource={"Bucket": b, "Key": "nws/new"},
          CopySourceIfMatch='"00"')
    ok("conditions: If-None-Match * / If-Match on PUT, 304 and 412 on GET/HEAD, If-Match on DELETE and copy")

    # partNumber: a part of a multipart object, with the part count; part 1 of a plain object is all of it.
    sizes = [5 << 20, 5 << 20, 1 << 20]
    data = os.urandom(sum(sizes))
    up = a.create_multipart_upload(Bucket=b, Key="nws/mp", CacheControl="max-age=60",
                                   ContentDisposition='attachment; filename="w.bin"')["UploadId"]
    parts, off = [], 0
    for n, size in enumerate(sizes, 1):
        p = a.upload_part(Bucket=b, Key="nws/mp", UploadId=up, PartNumber=n, Body=data[off:off + size])
        parts.append({"PartNumber": n, "ETag": p["ETag"]})
        off += size
    done = a.complete_multipart_upload(Bucket=b, Key="nws/mp", UploadId=up, MultipartUpload={"Parts": parts})
    off = 0
    for n, size in enumerate(sizes, 1):
        g = a.get_object(Bucket=b, Key="nws/mp", PartNumber=n)
        assert g["PartsCount"] == 3 and g["ContentLength"] == size and g["ETag"] == done["ETag"], g
        assert g["Body"].read() == data[off:off + size], n
        assert a.head_object(Bucket=b, Key="nws/mp", PartNumber=n)["ContentLength"] == size
        off += size
    fails("InvalidPart", a.get_object, Bucket=b, Key="nws/mp", PartNumber=4)
    at = a.get_object_attributes(Bucket=b, Key="nws/mp", ObjectAttributes=["ObjectParts", "ObjectSize"])
    assert at["ObjectParts"]["TotalPartsCount"] == 3 and at["ObjectSize"] == sum(sizes), at
    assert [p["Size"] for p in at["ObjectParts"]["Parts"]] == sizes, at
    fails("InvalidPart", a.get_object, Bucket=b, Key="nws/new", PartNumber=2)
    assert a.get_object(Bucket=b, Key="nws/new", PartNumber=1)["Body"].read() == b"n"
    h = a.head_object(Bucket=b, Key="nws/mp")
    assert h["CacheControl"] == "max-age=60" and h["ContentDisposition"] == 'attachment; filename="w.bin"', h
    ok("partNumber: each part of a 3-part object with PartsCount; InvalidPart beyond; standard headers kept")

    # Standard headers on PUT, response-* overrides on GET; DeleteObjects' 1,000-key limit.
    a.put_object(Bucket=b, Key="nws/h", Body=b"h", CacheControl="no-cache", ContentEncoding="identity",
                 ContentLanguage="en", Expires="Wed, 21 Oct 2099 07:28:00 GMT")
    g = a.get_object(Bucket=b, Key="nws/h", ResponseContentType="text/plain", ResponseCacheControl="max-age=1")
    assert g["ContentType"] == "text/plain" and g["CacheControl"] == "max-age=1", g
    assert g["ContentEncoding"] == "identity" and g["ContentLanguage"] == "en" and g["Expires"].year == 2099, g
    fails("MalformedXML", a.delete_objects, Bucket=b,
          Delete={"Objects": [{"Key": f"nws/d{i}"} for i in range(1001)]})
    ok("standard headers kept per version, response-* overrides; DeleteObjects refuses 1,001 keys")


def listings(a):
    """Issue 19: listings as S3 answers them (boto3 asks for encoding-type=url and decodes every name)."""
    b = "ckpts"
    odd = ["names/sp ace", "names/plus+sign", "names/pct%20x", "names/uni\u00e9", "names/a&b=c"]
    for k in odd:
        a.put_object(Bucket=b, Key=k, Body=b"x")
    got = [o["Key"] for o in a.list_objects_v2(Bucket=b, Prefix="names/")["Contents"]]
    assert got == sorted(odd), got
    got = [o["Key"] for o in a.list_objects(Bucket=b, Prefix="names/")["Contents"]]
    assert got == sorted(odd), got
    got = [v["Key"] for v in a.list_object_versions(Bucket=b, Prefix="names/")["Versions"]]
    assert got == sorted(odd), got
    r = a.list_objects_v2(Bucket=b, Prefix="names/", MaxKeys=0)
    assert r.get("Contents", []) == [] and r["IsTruncated"] is False, r
    # a full page whose remaining keys roll into its last prefix is the last page
    for k in ["roll/a/1", "roll/a/2", "roll/b/1", "roll/b/2"]:
        a.put_object(Bucket=b, Key=k, Body=b"r")
    r = a.list_objects_v2(Bucket=b, Prefix="roll/", Delimiter="/", MaxKeys=2)
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["roll/a/", "roll/b/"] and r["IsTruncated"] is False, r
    r = a.list_objects(Bucket=b, Prefix="roll/")
    assert r["Marker"] == "" and r["Contents"][0]["Owner"]["ID"] == "a", r
    assert "Owner" not in a.list_objects_v2(Bucket=b, Prefix="roll/")["Contents"][0]
    assert a.list_objects_v2(Bucket=b, Prefix="roll/", FetchOwner=True)["Contents"][0]["Owner"]["ID"] == "a"
    # ListBuckets pages; ListObjectVersions pages inside a key (boto3's paginator needs NextVersionIdMarker)
    for n in ["page-1", "page-2", "page-3"]:
        a.create_bucket(Bucket=n)
    r = a.list_buckets(MaxBuckets=2, Prefix="page-")
    assert [x["Name"] for x in r["Buckets"]] == ["page-1", "page-2"] and r["ContinuationToken"], r
    r = a.list_buckets(MaxBuckets=2, Prefix="page-", ContinuationToken=r["ContinuationToken"])
    assert [x["Name"] for x in r["Buckets"]] == ["page-3"] and "ContinuationToken" not in r, r
    for n in ["page-1", "page-2", "page-3"]:
        a.delete_bucket(Bucket=n)
    # A bucket with only an upload in progress can go (the upload goes with it); versioning is always on.
    a.create_bucket(Bucket="upl")
    a.put_bucket_versioning(Bucket="upl", VersioningConfiguration={"Status": "Enabled"})
    fails("NotImplemented", a.put_bucket_versioning, Bucket="upl", VersioningConfiguration={"Status": "Suspended"})
    a.create_multipart_upload(Bucket="upl", Key="half")
    a.delete_bucket(Bucket="upl")
    fails("NoSuchBucket", a.list_multipart_uploads, Bucket="upl")
    # encoding-type=url given by hand (so boto3 does not decode): S3's encoding, a space as %20
    r = a.list_objects_v2(Bucket=b, Prefix="names/", EncodingType="url")
    assert "names/sp%20ace" in [o["Key"] for o in r["Contents"]] and r["EncodingType"] == "url", r["Contents"]
    assert "Delimiter" not in a.list_objects_v2(Bucket=b, Prefix="names/", Delimiter="")
    for i in range(5):
        a.put_object(Bucket=b, Key="vers/k", Body=str(i).encode())
    seen = []
    for page in a.get_paginator("list_object_versions").paginate(Bucket=b, Prefix="vers/", MaxKeys=2):
        seen += [v["VersionId"] for v in page.get("Versions", [])]
    assert len(seen) == 5 and len(set(seen)) == 5, seen
    # Request ids on every answer, errors included; presigned URLs bounded to 7 days, expired ones 403.
    r = a.head_object(Bucket=b, Key="roll/a/1")
    assert len(r["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]) == 16, r["ResponseMetadata"]
    assert r["ResponseMetadata"]["HTTPHeaders"].get("x-amz-id-2"), r["ResponseMetadata"]
    try:
        a.get_object(Bucket=b, Key="roll/none")
        raise AssertionError("a missing key was found")
    except ClientError as e:
        rid = e.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
        assert e.response["Error"].get("RequestId") == rid or e.response["ResponseMetadata"].get("RequestId") == rid, e.response
    v4 = boto3.client("s3", endpoint_url=URL, aws_access_key_id=KEYS["a-writer"][0],
                      aws_secret_access_key=KEYS["a-writer"][1], region_name="us-east-1", verify=CA,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    for signer in (a, v4):  # boto3 presigns with SigV2 unless told s3v4
        for secs, want in [(3600, 200), (609901, 403), (0, 403), (-7, 403)]:
            url = signer.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "roll/a/1"},
                                                ExpiresIn=secs)
            got = requests.get(url, verify=CA)
            assert got.status_code == want, (url, secs, got.status_code, got.text)
            if want == 403:
                assert "<RequestId>" in got.text and "AccessDenied" in got.text, got.text
    # SigV2, for every operation it claims (bucket-level ones are signed with the canonical `/bucket/`).
    v2 = boto3.client("s3", endpoint_url=URL, aws_access_key_id=KEYS["a-writer"][0],
                      aws_secret_access_key=KEYS["a-writer"][1], region_name="us-east-1", verify=CA,
                      config=Config(signature_version="s3", s3={"addressing_style": "path"}))
    v2.create_bucket(Bucket="sigv2")
    v2.put_object(Bucket="sigv2", Key="k", Body=b"two")
    assert [o["Key"] for o in v2.list_objects(Bucket="sigv2")["Contents"]] == ["k"]
    assert [o["Key"] for o in v2.list_objects_v2(Bucket="sigv2")["Contents"]] == ["k"]
    assert v2.get_object(Bucket="sigv2", Key="k")["Body"].read() == b"two"
    assert v2.head_bucket(Bucket="sigv2")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert v2.get_bucket_versioning(Bucket="sigv2")["Status"] == "Enabled"
    v2.delete_object(Bucket="sigv2", Key="k")
    for vv in v2.list_object_versions(Bucket="sigv2").get("Versions", []) + \
            v2.list_object_versions(Bucket="sigv2").get("DeleteMarkers", []):
        v2.delete_object(Bucket="sigv2", Key=vv["Key"], VersionId=vv["VersionId"])
    v2.delete_bucket(Bucket="sigv2")
    ok("listings: names with space, +, %, & and non-ASCII round-trip; MaxKeys=0; last page not truncated; "
       "Marker and Owner; ListBuckets and ListObjectVersions paginate; request ids; presigned URLs bounded; SigV2 bucket and object operations")


def second_clients(a):
    """Issue 19's defects again through the minio SDK (a second, independent S3 client) and rclone."""
    import urllib3
    from minio import Minio
    from minio.error import S3Error
    from minio.sse import SseCustomerKey

    b = "ckpts"
    ak, sk = KEYS["a-writer"]
    host = urllib.parse.urlparse(URL).netloc
    m = Minio(host, access_key=ak, secret_key=sk, secure=True, region="us-east-1",
              http_client=urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=CA))
    odd = ["mc/sp ace", "mc/plus+sign", "mc/pct%41x"]
    import io
    for k in odd:
        m.put_object(b, k, io.BytesIO(b"m"), 1)
    got = [o.object_name for o in m.list_objects(b, prefix="mc/")]
    assert got == sorted(odd), got
    try:
        m.put_object(b, "mc/ssec", io.BytesIO(b"x"), 1, sse=SseCustomerKey(b"k" * 32))
        raise AssertionError("SSE-C was accepted")
    except S3Error as e:
        assert e.code == "NotImplemented", e
    etag = m.stat_object(b, "mc/sp ace").etag
    try:
        m.get_object(b, "mc/sp ace", request_headers={"If-Match": '"00"'})
        raise AssertionError("If-Match was ignored")
    except S3Error as e:
        assert e.response.status == 412, e
    r = m.get_object(b, "mc/sp ace", request_headers={"If-Match": f'"{etag}"'})
    assert r.read() == b"m"
    r.close()
    try:
        m.get_object(b, "mc/sp ace", extra_query_params={"partNumber": "2"})
        raise AssertionError("partNumber 2 of a one-part object was served")
    except S3Error as e:
        assert e.code == "InvalidPart", e
    ok("minio SDK: names with space, + and % listed; SSE-C refused; If-Match 412; partNumber beyond: InvalidPart")

    # rclone (Debian's), which lists with encoding-type=url too.
    if subprocess.run(["sh", "-c", "command -v rclone"], capture_output=True).returncode != 0:
        raise AssertionError("rclone is missing (apt-get install rclone); ./test installs it")
    env = dict(os.environ, RCLONE_CONFIG_GW_TYPE="s3", RCLONE_CONFIG_GW_PROVIDER="Other",
               RCLONE_CONFIG_GW_ENDPOINT=URL, RCLONE_CONFIG_GW_ACCESS_KEY_ID=ak,
               RCLONE_CONFIG_GW_SECRET_ACCESS_KEY=sk, RCLONE_CA_CERT=CA, RCLONE_CONFIG="/dev/null")
    env.pop("AWS_CA_BUNDLE", None)  # rclone's SDK will not start with it set
    src = os.path.join(WORK, "rclone-src")
    os.makedirs(src, exist_ok=True)
    names = ["a b.bin", "c+d.bin", "e%20f.bin", "g&h.bin"]
    for n in names:
        with open(os.path.join(src, n), "wb") as f:
            f.write(n.encode() * 100)
    subprocess.run(["rclone", "copy", src, "gw:ckpts/rc"], check=True, env=env, capture_output=True)
    listed = subprocess.run(["rclone", "lsf", "gw:ckpts/rc"], check=True, env=env, capture_output=True, text=True)
    assert sorted(listed.stdout.split("\n")[:-1]) == sorted(names), listed.stdout
    down = os.path.join(WORK, "rclone-down")
    subprocess.run(["rclone", "copy", "gw:ckpts/rc", down], check=True, env=env, capture_output=True)
    for n in names:
        with open(os.path.join(src, n), "rb") as x, open(os.path.join(down, n), "rb") as y:
            assert x.read() == y.read(), n
    chk = subprocess.run(["rclone", "check", src, "gw:ckpts/rc"], env=env, capture_output=True, text=True)
    assert chk.returncode == 0, chk.stderr
    ok("rclone: names with space, +, % and & copied up, listed, copied down and checked identical")


def multipart(a):
    # Parts checked: a wrong ETag, a small non-last part; abort; list_parts.
    up = a.create_multipart_upload(Bucket="ckpts", Key="mp/small")["UploadId"]
    p1 = a.upload_part(Bucket="ckpts", Key="mp/small", UploadId=up, PartNumber=1, Body=b"a" * 1000)
    p2 = a.upload_part(Bucket="ckpts", Key="mp/small", UploadId=up, PartNumber=2, Body=b"b" * 1000)
    parts = a.list_parts(Bucket="ckpts", Key="mp/small", UploadId=up)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2] and parts[0]["ETag"] == p1["ETag"]
    ups = a.list_multipart_uploads(Bucket="ckpts")["Uploads"]
    assert [u["UploadId"] for u in ups] == [up]
    done = {"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]}
    fails("EntityTooSmall", a.complete_multipart_upload, Bucket="ckpts", Key="mp/small", UploadId=up,
          MultipartUpload=done)
    wrong = {"Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]}
    fails("InvalidPart", a.complete_multipart_upload, Bucket="ckpts", Key="mp/small", UploadId=up,
          MultipartUpload=wrong)
    assert a.list_parts(Bucket="ckpts", Key="mp/small", UploadId=up, MaxParts=0)["Parts"][0]["PartNumber"] == 1
    a.abort_multipart_upload(Bucket="ckpts", Key="mp/small", UploadId=up)
    fails("NoSuchUpload", a.list_parts, Bucket="ckpts", Key="mp/small", UploadId=up)
    fails("NoSuchKey", a.get_object, Bucket="ckpts", Key="mp/small")
    up = a.create_multipart_upload(Bucket="ckpts", Key="mp/one")["UploadId"]
    p1 = a.upload_part(Bucket="ckpts", Key="mp/one", UploadId=up, PartNumber=1, Body=b"only part")
    done = {"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}]}
    first = a.complete_multipart_upload(Bucket="ckpts", Key="mp/one", UploadId=up, MultipartUpload=done)
    again = a.complete_multipart_upload(Bucket="ckpts", Key="mp/one", UploadId=up, MultipartUpload=done)
    assert (first["ETag"], first["VersionId"]) == (again["ETag"], again["VersionId"]), (first, again)
    assert a.get_object(Bucket="ckpts", Key="mp/one")["Body"].read() == b"only part"
    ok("multipart: list parts/uploads, small part and wrong ETag refused, abort; a retried completion "
       "gets the same answer")

    # A big object through boto3's transfer manager (multipart, parts in parallel), then read back. The file
    # is mostly holes (a 64 KiB random island every MiB, every chunk still unique) and the download is hashed
    # as it streams, so the test needs little disk: CI machines may have only a few GiB free.
    path = os.path.join(WORK, "big.bin")
    h = hashlib.sha256()
    with open(path, "wb") as f:
        f.truncate(BIG)
        for i, at in enumerate(range(0, BIG, 1 << 20)):
            f.seek(at)
            f.write(np.random.default_rng(i).integers(0, 256, min(64 << 10, BIG - at), dtype=np.uint8).tobytes())
    with open(path, "rb") as f:
        while b := f.read(16 << 20):
            h.update(b)
    cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
    t0 = time.time()
    a.upload_file(path, "ckpts", "mp/big.bin", Config=cfg)
    up_s = time.time() - t0
    head = a.head_object(Bucket="ckpts", Key="mp/big.bin")
    assert head["ContentLength"] == BIG and head["ETag"].endswith(f'-{-(-BIG // (64 << 20))}"'), head["ETag"]

    class Hashing:
        """A write-only file object: boto3 hands it the parts in order (it is not seekable)."""

        def __init__(self):
            self.h, self.n = hashlib.sha256(), 0

        def write(self, b):
            self.h.update(b)
            self.n += len(b)
            return len(b)

    got = Hashing()
    t0 = time.time()
    a.download_fileobj("ckpts", "mp/big.bin", got, Config=cfg)
    down_s = time.time() - t0
    assert got.n == BIG and got.h.hexdigest() == h.hexdigest(), "the big object reads back differently"
    r = a.get_object(Bucket="ckpts", Key="mp/big.bin", Range=f"bytes={BIG // 2}-{BIG // 2 + 99}")
    with open(path, "rb") as f:
        f.seek(BIG // 2)
        assert r["Body"].read() == f.read(100)
    os.remove(path)
    ok(f"multipart {BIG >> 20} MiB: upload {BIG / up_s / 1e6:.0f} MB/s, download {BIG / down_s / 1e6:.0f} MB/s "
       "(debug build), identical, ranged read across parts")


def isolation(a, body):
    b = client("b-writer")
    assert b.list_buckets()["Buckets"] == [], "tenant b sees no bucket of a"
    fails("NoSuchBucket", b.get_object, Bucket="ckpts", Key="data/x.bin")
    fails("NoSuchBucket", b.put_object, Bucket="ckpts", Key="evil", Body=b"x")
    fails("NoSuchBucket", b.list_objects_v2, Bucket="ckpts")
    fails("NoSuchBucket", b.delete_objects, Bucket="ckpts", Delete={"Objects": [{"Key": "data/x.bin"}]})
    fails("NoSuchBucket", b.copy_object, Bucket="ckpts", Key="c", CopySource={"Bucket": "ckpts", "Key": "data/x.bin"})
    b.create_bucket(Bucket="ckpts")  # bucket names are per tenant
    fails("NoSuchKey", b.copy_object, Bucket="ckpts", Key="c", CopySource={"Bucket": "ckpts", "Key": "data/x.bin"})
    assert b.list_objects_v2(Bucket="ckpts")["KeyCount"] == 0
    b.delete_bucket(Bucket="ckpts")
    assert a.get_object(Bucket="ckpts", Key="data/x.bin")["Body"].read() == body
    ok("tenant b's keys see none of a's buckets or objects; its own bucket of the same name is separate")

    fails("SignatureDoesNotMatch", client("a-writer", secret="0" * 64, retries=1).list_buckets)
    fails("InvalidAccessKeyId", client("MV0000000000000000", retries=1).list_buckets)
    fails("InvalidAccessKeyId", client("AKIAIOSFODNN7EXAMPLE", retries=1).list_buckets)
    fails("InvalidAccessKeyId", client("a-revoked", retries=1).list_buckets)
    r = requests.get(f"{URL}/ckpts/data/x.bin", verify=CA)
    assert r.status_code == 403 and b"AccessDenied" in r.content, r.status_code
    # A request whose signature was made for other bytes.
    r = requests.put(f"{URL}/ckpts/data/forged", data=b"x", verify=CA,
                     headers={"Authorization": f"AWS4-HMAC-SHA256 Credential={KEYS['a-writer'][0]}/20260101/"
                              "us-east-1/s3/aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
                              "x-amz-date": "20260101T000000Z", "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    assert r.status_code == 403, r.status_code
    fails("NoSuchKey", a.get_object, Bucket="ckpts", Key="data/forged")
    ok("wrong secret, unknown/foreign/revoked key ids, unsigned and forged requests: 403, nothing written")

    # A client that goes away mid-body: nothing is recorded, and the gateway serves on. (A whole presigned
    # PUT first, so the cut one fails for its cut, not for its signature.)
    whole = a.generate_presigned_url("put_object", Params={"Bucket": "ckpts", "Key": "data/whole"}, ExpiresIn=60)
    assert requests.put(whole, data=b"presigned", verify=CA).status_code == 200
    assert a.get_object(Bucket="ckpts", Key="data/whole")["Body"].read() == b"presigned"
    url = a.generate_presigned_url("put_object", Params={"Bucket": "ckpts", "Key": "data/cut"}, ExpiresIn=60)
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ssl.create_default_context(cafile=CA))
    conn.putrequest("PUT", f"{u.path}?{u.query}")
    conn.putheader("Content-Length", str(5 << 20))
    conn.endheaders()
    conn.send(os.urandom(1 << 20))
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    time.sleep(0.5)
    fails("NoSuchKey", a.get_object, Bucket="ckpts", Key="data/cut")
    assert a.get_object(Bucket="ckpts", Key="data/x.bin")["Body"].read() == body
    ok("a body cut off after 1 of 5 MiB leaves no object, and the gateway serves on")

    rd, ap = client("a-reader"), client("a-appender")
    assert rd.get_object(Bucket="ckpts", Key="data/x.bin")["Body"].read() == body
    fails("AccessDenied", rd.put_object, Bucket="ckpts", Key="r", Body=b"x")
    fails("AccessDenied", rd.delete_object, Bucket="ckpts", Key="data/x.bin")
    ap.put_object(Bucket="ckpts", Key="appended/1", Body=b"from a training node")
    fails("AccessDenied", ap.put_object, Bucket="ckpts", Key="appended/1", Body=b"")  # no overwrite: retention
    fails("AccessDenied", ap.get_object, Bucket="ckpts", Key="appended/1")
    fails("AccessDenied", ap.delete_object, Bucket="ckpts", Key="appended/1")
    fails("AccessDenied", ap.delete_bucket, Bucket="ckpts")
    ok("roles: reader cannot write or delete; appender writes but cannot overwrite, read or delete")
    r = requests.post(f"{URL}/ckpts", files={"file": ("x", b"form upload")}, data={"key": "form"}, verify=CA)
    assert r.status_code == 501, r.status_code
    fails("NoSuchKey", a.get_object, Bucket="ckpts", Key="form")
    ok("browser form POST refused before its body is read (501)")

    q = client("q-writer")
    q.create_bucket(Bucket="small")
    q.put_object(Bucket="small", Key="fits", Body=os.urandom(100_000))
    msg = fails("AccessDenied", q.put_object, Bucket="small", Key="big", Body=os.urandom(3_000_000))
    assert "quota max_bytes" in msg, msg
    assert [o["Key"] for o in q.list_objects_v2(Bucket="small")["Contents"]] == ["fits"]
    ok(f"quota: over max_bytes refused as AccessDenied ({msg[:60]}...), nothing listed")

    r = client("r-writer", retries=1)
    codes = []
    while "SlowDown" not in codes and len(codes) < 40:
        try:
            r.list_buckets()
            codes.append(200)
        except ClientError as e:
            codes.append(e.response["Error"]["Code"])
            assert e.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after"), "SlowDown names a wait"
    assert codes[-1] == "SlowDown" and 200 in codes and set(codes) <= {200, "SlowDown"}, codes
    ok(f"rate limit of 2 requests/s: request {len(codes)} in a rapid series answered SlowDown with Retry-After")


def training_job(a):
    """Save checkpoints every few seconds through fsspec/s3fs, list, read back, delete old ones."""
    fs = s3fs.S3FileSystem(key=KEYS["a-writer"][0], secret=KEYS["a-writer"][1],
                           client_kwargs={"endpoint_url": URL, "verify": CA, "region_name": "us-east-1"})
    keep = 2
    for step in range(1, 6):
        blob = safetensors(step)
        with fs.open(f"ckpts/run1/step-{step}/model.safetensors", "wb") as f:
            f.write(blob)
        with fs.open(f"ckpts/run1/step-{step}/state.json", "w") as f:
            json.dump({"step": step, "lr": 1e-4}, f)
        steps = sorted(fs.ls("ckpts/run1/", detail=False))
        assert steps[-1].endswith(f"step-{step}"), steps
        with fs.open(f"ckpts/run1/step-{step}/model.safetensors", "rb") as f:
            assert f.read() == blob, f"step {step} reads back differently"
        with fs.open(f"ckpts/run1/step-{step}/model.safetensors", "rb") as f:
            f.seek(8 + 1000)
            assert f.read(4096) == blob[1008:5104]
        for old in steps[:-keep]:
            fs.rm(old, recursive=True)
        time.sleep(1)
    fs.invalidate_cache()
    left = sorted(fs.find("ckpts/run1/"))
    assert left == [f"ckpts/run1/step-{s}/{n}" for s in (4, 5) for n in ("model.safetensors", "state.json")], left
    ok("training loop through s3fs: 5 checkpoints saved, listed, read back (whole and ranged), old ones deleted")
    return {k.split("/", 1)[1]: sha(fs.cat_file(k)) for k in left}


def aws_cli(a):
    path = os.path.join(WORK, "cli.bin")
    data = os.urandom(12 << 20)
    with open(path, "wb") as f:
        f.write(data)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEYS["a-writer"][0], AWS_SECRET_ACCESS_KEY=KEYS["a-writer"][1],
               AWS_DEFAULT_REGION="us-east-1", AWS_CA_BUNDLE=CA)
    aws = ["aws", "--endpoint-url", URL, "s3"]
    subprocess.run(aws + ["cp", path, "s3://ckpts/cli/cli.bin"], env=env, check=True, capture_output=True)
    ls = subprocess.run(aws + ["ls", "s3://ckpts/cli/"], env=env, check=True, capture_output=True, text=True)
    assert "cli.bin" in ls.stdout and str(len(data)) in ls.stdout, ls.stdout
    got = subprocess.run(aws + ["cp", "s3://ckpts/cli/cli.bin", "-"], env=env, check=True, capture_output=True)
    assert got.stdout == data
    subprocess.run(aws + ["rm", "s3://ckpts/cli/cli.bin"], env=env, check=True, capture_output=True)
    os.remove(path)
    ok("AWS CLI: cp up (multipart), ls, cp down, rm")


def main():
    a = client("a-writer")
    body = basics(a)
    multipart(a)
    no_wrong_success(a)
    listings(a)
    second_clients(a)
    isolation(a, body)
    objs = training_job(a)
    aws_cli(a)
    objs["data/x.bin"] = sha(body)
    with open(MANIFEST, "w") as f:
        json.dump(objs, f)
    # Retention: the overwritten and deleted versions of data/v.bin go once keep_noncurrent has passed and
    # a prune job has run (s3.sh configures both short).
    deadline = time.time() + 120
    while True:
        vs = a.list_object_versions(Bucket="ckpts", Prefix="data/v.bin")
        if not vs.get("Versions") and not vs.get("DeleteMarkers"):
            break
        assert time.time() < deadline, f"old versions were never expired: {vs.get('Versions')}"
        time.sleep(1)
    assert a.get_object(Bucket="ckpts", Key="data/x.bin")["Body"].read() == body
    ok("retention: noncurrent versions expired by the server's prune job; current objects intact")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        raise
