"""Intake: reading batches (folder or zip + manifest.csv), putting raw bytes in the inbox, enqueueing."""
