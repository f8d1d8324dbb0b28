"""Reverse pipelines: lists from EMRs and registries (lost-to-follow-up patients, contacts of a case) into CHT."""
