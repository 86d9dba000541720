"""The demo has no pages: it exists for its management commands."""

urlpatterns: list = []
