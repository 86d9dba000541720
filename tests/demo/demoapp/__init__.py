"""A one-model app whose rows hold unicode text and binary data, for the backup round trip."""
