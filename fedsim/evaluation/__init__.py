"""Downstream evaluation protocol, fidelity metrics, reports."""
