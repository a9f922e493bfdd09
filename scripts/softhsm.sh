#!/usr/bin/env bash
# SoftHSM2, a real PKCS#11 module, for the tests of KMS key slots: Debian bookworm's softhsm2 and
# opensc (pkcs11-tool), apt-installed (neither starts a service); scripts/kms-pkcs11.sh is the KMS command.
#
#   scripts/softhsm.sh install     apt-get softhsm2, opensc and openssl (idempotent, quick when done)
#   scripts/softhsm.sh env         print LIFELINE_SOFTHSM_MODULE and LIFELINE_PKCS11_TOOL, for `eval`
#   scripts/softhsm.sh token DIR   make a token store in DIR (must not hold one) with one token and key
#                                  pair; writes DIR/env and prints it on stdout, for `eval`
#
# Layout of DIR: DIR/softhsm2.conf (tokendir DIR/tokens), DIR/tokens/, DIR/env. The token is labelled
# `lifeline` (SO PIN 12345678, user PIN 123456) and holds an RSA-3072 key pair with CKA_ID 01: the private
# key is sensitive, never extractable and allowed RSA-PKCS-OAEP only, so unwrapping happens in the HSM.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "$0")" && pwd)
TOOLS_HOME=/opt/lifeline-tools
APT_MARKER=$TOOLS_HOME/.apt-updated
INSTALLING=SoftHSM
# Debian's softhsm2 links the module here for every architecture.
MODULE=${LIFELINE_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
PKCS11_TOOL=${LIFELINE_PKCS11_TOOL:-/usr/bin/pkcs11-tool}
SOFTHSM_UTIL=/usr/bin/softhsm2-util
# openssl encrypts to the token's public key on wrap: this opensc's pkcs11-tool encrypts with AES only.
APT_PACKAGES=(softhsm2 opensc openssl)
# Test values, also scripts/kms-pkcs11.sh's defaults.
TOKEN_LABEL=lifeline
SO_PIN=12345678
USER_PIN=123456
KEY_ID=01
KEY_LABEL=lifeline-kek

# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

# shellcheck source=scripts/apt.sh
source "$SCRIPTS/apt.sh"

# Quoted for any shell: `sh -c` (dash) runs LIFELINE_KMS_COMMAND, and dash has no $'...'.
shquote() {
	local s=${1//\'/\'\\\'\'}
	printf "'%s'" "$s"
}

# Both must load and work, not merely exist: a token store of their own, with no token in it, is enough
# to list SoftHSM's mechanisms.
verify() {
	local dir out missing mech
	[[ -f $MODULE ]] || die "$MODULE is missing"
	[[ -x $PKCS11_TOOL ]] || die "$PKCS11_TOOL is missing"
	missing=$(ldd "$MODULE" | grep 'not found' || true)
	[[ -z $missing ]] || die "$MODULE lacks libraries: $missing"
	dir=$(mktemp -d)
	mkdir "$dir/tokens"
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir" \
		>"$dir/softhsm2.conf"
	if ! out=$(SOFTHSM2_CONF=$dir/softhsm2.conf "$PKCS11_TOOL" --module "$MODULE" --list-mechanisms \
		</dev/null 2>&1); then
		rm -rf "$dir"
		die "$PKCS11_TOOL could not list the mechanisms of $MODULE: $out"
	fi
	rm -rf "$dir"
	for mech in RSA-PKCS-KEY-PAIR-GEN RSA-PKCS-OAEP; do
		grep -q "^ *$mech," <<<"$out" || die "$MODULE offers no $mech"
	done
	out=$(openssl version 2>&1) || die "openssl does not run: $out"
	log "softhsm2 $(dpkg-query -W -f='${Version}' softhsm2), opensc $(dpkg-query -W -f='${Version}' opensc)," \
		"$out"
}

cmd_install() {
	local t0=$SECONDS
	apt_ensure "${APT_PACKAGES[@]}"
	verify
	log "ready in $((SECONDS - t0))s"
}

cmd_env() {
	printf 'export %s=%q\n' LIFELINE_SOFTHSM_MODULE "$MODULE" LIFELINE_PKCS11_TOOL "$PKCS11_TOOL"
}

cmd_token() {
	local dir=$1 conf out
	[[ -f $MODULE && -x $PKCS11_TOOL && -x $SOFTHSM_UTIL ]] ||
		die "SoftHSM is not installed: run 'scripts/softhsm.sh install' first"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[[ ! -e $dir/tokens ]] || die "$dir already holds a token store ($dir/tokens); give an empty folder"
	conf=$dir/softhsm2.conf
	mkdir -m 700 "$dir/tokens"
	printf '%s\n' "# SoftHSM2 token store for lifeline's tests (scripts/softhsm.sh token)" \
		"directories.tokendir = $dir/tokens" "objectstore.backend = file" "log.level = ERROR" \
		"slots.removable = false" >"$conf"
	export SOFTHSM2_CONF=$conf
	out=$("$SOFTHSM_UTIL" --init-token --free --label "$TOKEN_LABEL" --so-pin "$SO_PIN" --pin "$USER_PIN" \
		</dev/null 2>&1) || die "softhsm2-util could not initialise the token: $out"
	# The PIN through the environment, never on the command line.
	out=$(LIFELINE_PKCS11_PIN=$USER_PIN "$PKCS11_TOOL" --module "$MODULE" --token-label "$TOKEN_LABEL" \
		--login --pin env:LIFELINE_PKCS11_PIN --keypairgen --key-type rsa:3072 --id "$KEY_ID" \
		--label "$KEY_LABEL" --usage-decrypt --sensitive --allowed-mechanisms RSA-PKCS-OAEP </dev/null 2>&1) ||
		die "pkcs11-tool could not generate the key pair: $out"
	grep -q 'never extractable' <<<"$out" || die "the token's private key is extractable: $out"
	{
		printf 'export %s=%s\n' SOFTHSM2_CONF "$(shquote "$conf")" \
			LIFELINE_PKCS11_MODULE "$(shquote "$MODULE")" \
			LIFELINE_PKCS11_TOOL "$(shquote "$PKCS11_TOOL")" \
			LIFELINE_PKCS11_TOKEN "$TOKEN_LABEL" \
			LIFELINE_PKCS11_PIN "$USER_PIN" \
			LIFELINE_PKCS11_KEY_ID "$KEY_ID"
		# Self-contained: it names its token store, so a caller needs no other variable.
		printf 'export LIFELINE_KMS_COMMAND=%s\n' \
			"$(shquote "SOFTHSM2_CONF=$(shquote "$conf") $(shquote "$SCRIPTS/kms-pkcs11.sh")")"
	} >"$dir/env.tmp"
	mv "$dir/env.tmp" "$dir/env"
	log "token '$TOKEN_LABEL' (user PIN $USER_PIN) with RSA-3072 key $KEY_ID in $dir/tokens"
	log "config $conf; env $dir/env"
	cat "$dir/env"
}

main() {
	case ${1:-} in
	install | env)
		[[ $# -eq 1 ]] || usage
		"cmd_$1"
		;;
	token)
		[[ $# -eq 2 && -n $2 ]] || usage
		cmd_token "$2"
		;;
	*) usage ;;
	esac
}

main "$@"
