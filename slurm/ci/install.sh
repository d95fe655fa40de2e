#!/usr/bin/env bash
# Installs the Debian packages that slurm/ci/cluster.sh needs (SLURM 22.05 on Debian 12,
# munge, and slurmdbd + MariaDB for accounting, which submitit needs to see failed tasks),
# plus espeak-ng and wordnet-base (WordNet 3.0, read by answer extraction's derived forms). Skips apt entirely when everything is already there. Needs root.
# The image's policy-rc.d stops the packages from starting services: cluster.sh starts them.
set -euo pipefail

PACKAGES=(slurm-wlm slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge
          slurmdbd slurm-wlm-mysql-plugin mariadb-server espeak-ng wordnet-base)
BINARIES=(slurmctld slurmd slurmdbd sinfo sbatch squeue scancel sacct sacctmgr scontrol srun
          munged munge unmunge mariadbd mariadb mariadb-admin mariadb-install-db espeak-ng)

missing() {
    local b p
    for b in "${BINARIES[@]}"; do
        PATH=$PATH:/usr/sbin:/sbin command -v "$b" >/dev/null 2>&1 || { echo "binary $b"; return 0; }
    done
    for p in "${PACKAGES[@]}"; do
        dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || { echo "package $p"; return 0; }
    done
    return 1
}

if what=$(missing); then
    echo "[install.sh] missing $what: installing ${PACKAGES[*]}" >&2
    SUDO=()
    [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
    if what=$(missing); then
        echo "[install.sh] ERROR: still missing $what after apt-get install" >&2
        exit 1
    fi
else
    echo "[install.sh] SLURM, munge, MariaDB, espeak-ng and wordnet-base are already installed" >&2
fi
