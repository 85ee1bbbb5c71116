"""What an operator runs the platform with: readiness, metrics collected at scrape time, and the
queries behind the operator commands (`dmp batches`, `items`, `requeue`, `review`, `notify failed`)."""
