"""What every feature of the API needs: resources, authentication, limits, errors, the event hub."""
