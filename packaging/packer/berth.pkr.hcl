# An EC2 image (AMI) for Berth hosts, built from Debian's own Debian 12 image: containerd, runc,
# nftables and tini from Debian, the berth .deb, containerd and berth-agent enabled. The agent is
# not configured in the image: each instance gets its cluster, scheduler endpoint, CA pin and
# join token at launch, from its user data (a berth: section, or cloud-init write_files) or its
# EC2 tags (berth:<key>), read once by berth-agent-first-boot.service; see the README.
#
#   packer build -var berth_deb=target/packages/berth_0.1.0_amd64.deb packaging/packer
#
# `make package-check` runs `packer validate` on it.

variable "berth_deb" {
  type        = string
  description = "Path of the berth .deb to install (make package writes it to target/packages/)."
}

variable "region" {
  type        = string
  default     = "eu-west-1"
  description = "AWS region the image is built in."
}

variable "instance_type" {
  type        = string
  default     = "t3.small"
  description = "Instance type of the build instance."
}

variable "arch" {
  type        = string
  default     = "amd64"
  description = "Debian architecture of the image: amd64 or arm64 (with an arm64 instance type and .deb)."
}

variable "ami_name_prefix" {
  type        = string
  default     = "berth-debian-12"
  description = "The image's name before its build time."
}

source "amazon-ebs" "debian12" {
  region        = var.region
  instance_type = var.instance_type
  ami_name      = "${var.ami_name_prefix}-${var.arch}-{{timestamp}}"
  ssh_username  = "admin"
  # Debian's official images, published by the Debian cloud team's AWS account.
  source_ami_filter {
    filters = {
      name                = "debian-12-${var.arch}-*"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"]
    most_recent = true
  }
  tags = {
    Name      = "${var.ami_name_prefix}-${var.arch}"
    BaseImage = "{{ .SourceAMIName }}"
    BuiltBy   = "packer"
  }
}

build {
  sources = ["source.amazon-ebs.debian12"]

  provisioner "file" {
    source      = var.berth_deb
    destination = "/tmp/berth.deb"
  }

  provisioner "shell" {
    execute_command = "sudo sh -eux '{{ .Path }}'"
    inline = [
      "export DEBIAN_FRONTEND=noninteractive",
      "apt-get update",
      "apt-get -y upgrade",
      "apt-get install -y --no-install-recommends containerd runc nftables tini /tmp/berth.deb",
      "rm /tmp/berth.deb",
      "systemctl enable containerd.service berth-agent.service",
      # Nothing instance-specific in the image: no identity, no state, no token.
      "systemctl stop berth-agent.service || true",
      "rm -rf /var/lib/berth/*",
      # The first boot runs again on each instance (berth-agent-first-boot.service).
      "rm -f /etc/berth/first-boot.toml",
      "test ! -e /var/lib/berth/instance-identity",
      # cloud-init runs again on every instance made from the image (user data, SSH host keys).
      "cloud-init clean --logs --machine-id",
      "apt-get clean",
    ]
  }
}
