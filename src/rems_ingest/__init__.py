"""rems-ingest: HL7 ORU^R01 lab feed -> clozapine ANC rules -> durable alerts."""

__version__ = "0.1.0"
