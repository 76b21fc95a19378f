"""Delivery status notifications: bounces, delay warnings, success notices (RFC 3464)."""
