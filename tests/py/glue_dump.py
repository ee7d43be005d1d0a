#!/usr/bin/env python3
"""Reads one Glue database back with boto3 (an AWS client mongolake does not use), for the Glue mode tests.

    glue_dump.py --endpoint URL --database DB

Prints {"tables": {name: {"table": <get_table's Table>, "versions": N, "partitions": [<get_partitions' Partition>,
...]}}} on stdout (partitions only for tables that are not views; every page read). Credentials and region from
the environment (AWS_ACCESS_KEY_ID, ...; us-east-1 by default).
"""
import argparse
import json
import os

import boto3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--database", required=True)
    args = ap.parse_args()
    glue = boto3.client("glue", endpoint_url=args.endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"))
    out = {}
    for page in glue.get_paginator("get_tables").paginate(DatabaseName=args.database):
        for t in page["TableList"]:
            name = t["Name"]
            table = glue.get_table(DatabaseName=args.database, Name=name)["Table"]
            versions = glue.get_table_versions(DatabaseName=args.database, TableName=name)["TableVersions"]
            entry = {"table": table, "versions": len(versions)}
            if table.get("TableType") != "VIRTUAL_VIEW":
                parts = []
                for pp in glue.get_paginator("get_partitions").paginate(DatabaseName=args.database, TableName=name):
                    parts.extend(pp["Partitions"])
                entry["partitions"] = parts
            out[name] = entry
    print(json.dumps({"tables": out}, default=str, sort_keys=True))


if __name__ == "__main__":
    main()
