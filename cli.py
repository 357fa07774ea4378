"""``python cli.py ...`` from a checkout runs the ``esl`` command line; the click group itself is
:mod:`esl_deploy.cli` (installed under the ``esl_deploy`` name, so nothing called ``cli`` lands in
site-packages)."""
from esl_deploy.cli import main

if __name__ == "__main__":
    main()
