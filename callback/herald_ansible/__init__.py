"""Herald's Ansible callback plugin package (standard library only).

* ``python3 -m herald_ansible.path`` prints the directory to put in ``ANSIBLE_CALLBACK_PLUGINS``.
* ``herald-ship`` ships spooled events without a playbook (cron, systemd timer).
"""

__version__ = "0.1.0"
