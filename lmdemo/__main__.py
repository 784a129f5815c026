import sys

from lmdemo.cli import main

sys.exit(main())
