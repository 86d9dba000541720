"""The fault matrix: each test tries to break one promise (nothing lost, atomic restore, no
secret on disk, nothing executed) and asserts that it holds. See docs/reliability.md."""
