#!/usr/bin/env python3
"""Checks the server-side encryption of every object under an S3 prefix (boto3; shares no code with mongolake).

Usage: python3 tests/py/check_sse.py s3://BUCKET/PREFIX --sse aws:kms [--kms-key-id ID] [--bucket-key]

Lists every object under the prefix, HEADs each and compares its ServerSideEncryption, SSEKMSKeyId and
BucketKeyEnabled with what was asked. (moto records the bucket-key flag on PutObject and CopyObject but not on
CreateMultipartUpload, so an object completed from a multipart upload, ETag `"...-N"`, is not held to it.)
The S3 endpoint comes from MONGOLAKE_TEST_S3_ENDPOINT, credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.

Prints one JSON object on stdout: {"objects": N, "multipart": N, "kinds": {kind: N}, "bad": [problem, ...]},
where kind is what the key is in mongolake's layout (data, state, schema, index, runs, rejects, leases,
staging, ...). Exit 0 when no object is bad (and there is at least one), 1 otherwise.
"""
import argparse
import json
import os
import sys

import boto3


def kind_of(rel):
    parts = rel.split("/")
    if parts[0] == "_mongolake" and len(parts) > 1:
        return parts[1]
    return "data"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--sse", required=True)
    ap.add_argument("--kms-key-id")
    ap.add_argument("--bucket-key", action="store_true")
    a = ap.parse_args()
    if not a.url.startswith("s3://"):
        ap.error("the lake must be s3://bucket/prefix")
    bucket, _, prefix = a.url[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ["MONGOLAKE_TEST_S3_ENDPOINT"],
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        region_name="us-east-1",
    )
    out = {"objects": 0, "multipart": 0, "kinds": {}, "bad": []}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/" if prefix else ""):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            rel = key[len(prefix) + 1:] if prefix else key
            head = s3.head_object(Bucket=bucket, Key=key)
            multipart = "-" in head.get("ETag", "")
            out["objects"] += 1
            out["multipart"] += int(multipart)
            kind = kind_of(rel)
            out["kinds"][kind] = out["kinds"].get(kind, 0) + 1
            problems = []
            if head.get("ServerSideEncryption") != a.sse:
                problems.append(f"ServerSideEncryption={head.get('ServerSideEncryption')!r}, want {a.sse!r}")
            if a.kms_key_id and head.get("SSEKMSKeyId") != a.kms_key_id:
                problems.append(f"SSEKMSKeyId={head.get('SSEKMSKeyId')!r}, want {a.kms_key_id!r}")
            if a.bucket_key and not multipart and head.get("BucketKeyEnabled") is not True:
                problems.append(f"BucketKeyEnabled={head.get('BucketKeyEnabled')!r}, want True")
            if problems:
                out["bad"].append(f"{key}: " + "; ".join(problems))
    print(json.dumps(out, indent=1, sort_keys=True))
    return 0 if out["objects"] > 0 and not out["bad"] else 1


if __name__ == "__main__":
    sys.exit(main())
