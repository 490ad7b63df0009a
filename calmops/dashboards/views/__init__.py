"""The viewer's pages; each module has a ``render()`` the app's navigation calls."""
