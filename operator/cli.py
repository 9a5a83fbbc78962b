"""The `serveplane` command."""
import sys
def main() -> None:
    print("serveplane", sys.argv[1:])
