# Ansible loads herald.py from this directory by path (ANSIBLE_CALLBACK_PLUGINS).
