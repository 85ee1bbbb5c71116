"""The life of a document: the plain stage functions the workers' actors wrap.

`process` takes an item from the inbox to the index (spool, validate, classify, seal, index) or to
its rejection; `validate`, `inspect`, `pdfscan` and `images` read hostile bytes, in a child process
confined by `sandbox` and `confinement`; `classify` codes a document from the tables in `data/`;
`titles` seals titles at rest; `stored` reads and destroys stored documents.
"""
