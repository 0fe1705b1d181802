"""What every service shares: settings, the app factory, errors, logging, metrics, HTTP client."""
