"""Invoicing service."""
