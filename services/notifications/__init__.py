"""Notifications: e-mail over SMTP, SMS over SMPP and signed webhooks from the suite's events."""
