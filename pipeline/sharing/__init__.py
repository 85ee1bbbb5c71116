"""Document sharing (IHE MHD / French PDSm): the metadata, its value sets, the FHIR resources built from the index."""
