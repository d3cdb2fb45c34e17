"""``python -m pylstm.bench``: the same as ``pylstm bench``."""

import sys

from pylstm.bench import main

if __name__ == "__main__":
    sys.exit(main())
