"""What cloud-init 22.4 (Debian 12) understands at the top level of a cloud-config.

cloud-init's own schema lets unknown top-level keys through without a word, so a typo in
extra cloud-config would be silently ignored on the guest; kvmnet accepts only these.
The list is the `properties` of cloud-init 22.4's schema-cloud-config-v1.json (its
modules' keys); tests/test_guests_cloudinit.py checks it against the installed package.
"""

from __future__ import annotations

CLOUD_CONFIG_KEYS = frozenset(
    """
    allow_public_ssh_keys ansible apk_repos apt apt_pipelining apt_reboot_if_required apt_update
    apt_upgrade authkey_hash autoinstall bootcmd byobu_by_default ca-certs ca_certs chef chpasswd
    cloud_config_modules cloud_final_modules cloud_init_modules device_aliases disable_ec2_metadata
    disable_root disable_root_opts disk_setup drivers fan final_message fqdn fs_setup groups
    growpart grub-dpkg grub_dpkg hostname keyboard landscape locale locale_configfile lxd
    manage_etc_hosts manage_resolv_conf mcollective migrate mount_default_fields mounts
    no_ssh_fingerprints ntp package_reboot_if_required package_update package_upgrade packages
    password phone_home power_state prefer_fqdn_over_hostname preserve_hostname puppet random_seed
    reporting resize_rootfs resolv_conf rh_subscription rsyslog runcmd salt_minion snap spacewalk
    ssh ssh_authorized_keys ssh_deletekeys ssh_fp_console_blacklist ssh_genkeytypes ssh_import_id
    ssh_key_console_blacklist ssh_keys ssh_publish_hostkeys ssh_pwauth ssh_quiet_keygen swap
    timezone ubuntu_advantage updates user users vendor_data wireguard write_files yum_repo_dir
    yum_repos zypper
    """.split()
)

#: Keys kvmnet writes itself: a profile sets them through the guest's own settings.
MANAGED = frozenset(("hostname", "preserve_hostname", "fqdn", "users", "user", "ssh_authorized_keys"))
#: Lists kvmnet writes that extra cloud-config may extend (appended after kvmnet's).
EXTENDABLE = frozenset(("write_files", "runcmd", "bootcmd", "packages"))
