"""Loading trained bundles and running them."""
