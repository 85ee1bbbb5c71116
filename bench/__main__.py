"""Entry point: `python -m bench ingest --documents 2000 --workers 2`."""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.core.inbox import PACK_DOCUMENTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="name", required=True)
    ingest = sub.add_parser("ingest", help="distributed ingestion vs the necessary work on the same cores; CPU, requests, SQL per document")
    ingest.add_argument("--documents", type=int, default=2000)
    ingest.add_argument("--workers", type=int, default=2, help="worker processes")
    ingest.add_argument("--threads", type=int, default=2, help="threads per worker process")
    ingest.add_argument("--patients", type=int, default=50)
    validate = sub.add_parser("validate", help="validate + classify in the sandbox vs the same checks in-process")
    validate.add_argument("--documents", type=int, default=1000)
    validate.add_argument("--pack", type=int, default=PACK_DOCUMENTS, help="documents per message, as packed by intake (1: each alone)")
    crypto = sub.add_parser("crypto", help="streaming envelope encryption vs bare AES-GCM over the same segments")
    crypto.add_argument("--size", default="1GiB", help="document size, e.g. 1GiB, 256MiB")
    crypto.add_argument("--pipeline", action="store_true", help="also one document of that size through ingest and read")
    crypto.add_argument("--rounds", type=int, default=3, help="interleaved envelope/floor pairs; each part keeps its best")
    feed = sub.add_parser("feed", help="insurer feed: file to committed rows vs our parse + COPY from the file (PostgreSQL)")
    feed.add_argument("--lines", type=int, default=1_000_000)
    feed.add_argument("--workers", type=int, default=2)
    feed.add_argument("--threads", type=int, default=1)
    feed.add_argument("--patients", type=int, default=20_000)
    feed.add_argument("--rounds", type=int, default=1, help="floor then pipeline, this many times; each part keeps its best")
    retention = sub.add_parser("retention", help="care-history reads in their own process: p99 during the prune vs idle")
    retention.add_argument("--rows", type=int, default=5_000_000)
    read = sub.add_parser("read", help="document read through the API vs a raw S3 GET where the GET is not saturated; list p99")
    read.add_argument("--documents", type=int, default=100_000)
    read.add_argument("--concurrency", type=int, default=32)
    read.add_argument("--requests", type=int, default=2000)
    read.add_argument("--server-workers", type=int, default=2)
    upload = sub.add_parser("upload", help="zip batches through the HTTP API vs a PUT, the item rows and a message per batch")
    upload.add_argument("--documents", type=int, default=2000)
    upload.add_argument("--clients", type=int, default=8)
    upload.add_argument("--patients", type=int, default=50)
    upload.add_argument("--server-workers", type=int, default=1)
    upload.add_argument("--pad-kib", type=int, default=0, help="random bytes added to each document (real PDFs are 50 KiB and more)")
    fhir = sub.add_parser("fhir", help="ITI-65 deposits vs the same documents as zips through /v1/ingest; ITI-67 search p99")
    fhir.add_argument("--documents", type=int, default=2000)
    fhir.add_argument("--patients", type=int, default=50, help="one Bundle (and one zip) per patient")
    fhir.add_argument("--clients", type=int, default=8)
    fhir.add_argument("--index-documents", type=int, default=100_000)
    portal = sub.add_parser("portal", help="the portal's document list and document page vs the same through the JSON API")
    portal.add_argument("--documents", type=int, default=100_000)
    portal.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)

    if args.name == "ingest":
        from bench.ingest import run

        result = run(documents=args.documents, workers=args.workers, threads=args.threads, patients=args.patients)
    elif args.name == "validate":
        from bench.validate import run as run_validate

        result = run_validate(documents=args.documents, pack=args.pack)
    elif args.name == "crypto":
        from bench.crypto import parse_size
        from bench.crypto import run as run_crypto

        result = run_crypto(parse_size(args.size), args.pipeline, args.rounds)
    elif args.name == "feed":
        from bench.feed import run as run_feed

        result = run_feed(lines=args.lines, workers=args.workers, threads=args.threads, patients=args.patients, rounds=args.rounds)
    elif args.name == "retention":
        from bench.retention import run as run_retention

        result = run_retention(rows=args.rows)
    elif args.name == "read":
        from bench.read import run as run_read

        result = run_read(
            documents=args.documents, concurrency=args.concurrency, requests=args.requests, server_workers=args.server_workers
        )
    elif args.name == "upload":
        from bench.upload import run as run_upload

        result = run_upload(
            documents=args.documents, clients=args.clients, patients=args.patients, server_workers=args.server_workers, pad_kib=args.pad_kib
        )
    elif args.name == "fhir":
        from bench.fhir import run as run_fhir

        result = run_fhir(documents=args.documents, patients=args.patients, clients=args.clients, index_documents=args.index_documents)
    elif args.name == "portal":
        from bench.portal import run as run_portal

        result = run_portal(documents=args.documents, requests=args.requests)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
