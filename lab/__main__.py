"""`python -m lab ...` is `lab ...` (for environments without the console script on PATH)."""
from lab.cli import main

if __name__ == "__main__":
    main(prog_name="lab")
