"""Tooling the running app never imports: the test/benchmark app server with its
Chromium, and the drawn-digit generator that makes evaluation drawings from MNIST."""
