"""kvmnet: one YAML profile of a KVM fleet in, every artifact to build, boot and check it out."""

__version__ = "0.1.0"
