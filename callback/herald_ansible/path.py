"""Print the directory holding Herald's callback plugin, for ANSIBLE_CALLBACK_PLUGINS.

    export ANSIBLE_CALLBACK_PLUGINS="$(python3 -m herald_ansible.path)"
"""

import os

CALLBACK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "callback_plugins")


def main() -> None:
    print(CALLBACK_DIR)


if __name__ == "__main__":
    main()
