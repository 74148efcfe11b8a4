"""Failures a recipe reports on purpose, each with the exit code the TypeScript runner (and the user) sees."""


class RecipeError(Exception):
    """A clear, expected failure: one line on stderr, no traceback."""

    exit_code = 1


class ConfigError(RecipeError):
    """The config file is malformed or names something that does not exist."""

    exit_code = 2


class MissingModule(RecipeError):
    """A Python module the recipe needs is not installed (exit 5, like slm's MissingDependencyError)."""

    exit_code = 5

    def __init__(self, modules, purpose):
        self.modules = list(modules)
        self.purpose = purpose
        super().__init__(f"missing python module: {', '.join(self.modules)}")


class Cancelled(RecipeError):
    """Stopped by SIGINT after saving what could be saved (exit 130, like slm's CancelledError)."""

    exit_code = 130
