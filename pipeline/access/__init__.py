"""Who reads a record, and the trace of it: the tamper-evident access log (`audit`) and a record's
legal representatives (`representatives`)."""
