#!/usr/bin/env bash
# A KMS command for lifeline's KMS key slots (docs/format.md §3.3) backed by a PKCS#11 token, such as the
# SoftHSM2 token of `scripts/softhsm.sh token DIR`. lifeline runs it with LIFELINE_KMS_OPERATION set:
#
#   wrap     stdin: the key (lifeline's 32-byte KEK); stdout: the wrapped blob (384 bytes for RSA-3072)
#   unwrap   stdin: a blob wrap printed; stdout: the key, decrypted inside the token
#
# Raw bytes both ways. On failure it prints nothing on stdout, says why on stderr and exits 1.
# The blob is RSAES-OAEP (SHA-1, MGF1-SHA1: the only OAEP hash SoftHSM 2.6 takes) to the token's public
# key; only its private key, which never leaves the token, opens it. wrap encrypts with openssl (this
# opensc's pkcs11-tool encrypts with AES only) to the public key it reads from the token after logging
# in, so a wrong PIN or a missing token fails wrap as well as unwrap.
#
# Settings (the defaults are what scripts/softhsm.sh token makes):
#   SOFTHSM2_CONF           SoftHSM's config, naming its token store (SoftHSM's own variable)
#   LIFELINE_PKCS11_MODULE  the PKCS#11 module (default $LIFELINE_SOFTHSM_MODULE, else Debian's SoftHSM)
#   LIFELINE_PKCS11_TOOL    pkcs11-tool (default: the one on PATH)
#   LIFELINE_PKCS11_TOKEN   the token's label (default lifeline)
#   LIFELINE_PKCS11_PIN     the user PIN (default 123456, the test token's)
#   LIFELINE_PKCS11_KEY_ID  CKA_ID of the key pair, in hex (default 01)
set -euo pipefail
umask 077

MODULE=${LIFELINE_PKCS11_MODULE:-${LIFELINE_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}}
PKCS11_TOOL=${LIFELINE_PKCS11_TOOL:-pkcs11-tool}
TOKEN=${LIFELINE_PKCS11_TOKEN:-lifeline}
KEY_ID=${LIFELINE_PKCS11_KEY_ID:-01}
# pkcs11-tool reads it from the environment (`--pin env:NAME`): never on a command line.
export LIFELINE_PKCS11_PIN=${LIFELINE_PKCS11_PIN:-123456}
OAEP=(-m RSA-PKCS-OAEP --hash-algorithm SHA-1 --mgf MGF1-SHA1)
OPENSSL_OAEP=(-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 -pkeyopt rsa_mgf1_md:sha1)
OPERATION=${LIFELINE_KMS_OPERATION:-}
tmp= # the private folder of the input and output, removed on exit

log() { echo "kms-pkcs11.sh: $*" >&2; }
die() {
	case $OPERATION in
	wrap | unwrap) log "$OPERATION: $*" ;;
	*) log "error: $*" ;;
	esac
	exit 1
}

# What the tool said, without its chatter, and what that most likely means here.
explain() {
	local said=$1 hint='' store=${SOFTHSM2_CONF:-"the module's default token store"}
	said=$(grep -v -e '^Using ' -e '^OAEP parameters' -e '^Aborting' -e 'ALWAYS_AUTHENTICATE' <<<"$said" |
		tr '\n' ' ')
	case $said in
	*CKR_PIN_INCORRECT* | *CKR_PIN_LEN_RANGE*) hint="wrong PIN (LIFELINE_PKCS11_PIN) for token '$TOKEN'" ;;
	*CKR_PIN_LOCKED*) hint="the user PIN of token '$TOKEN' is locked" ;;
	*"No slot"*) hint="no token '$TOKEN' in $store (is the token store still there?)" ;;
	*C_Initialize*) hint="the PKCS#11 module $MODULE did not start (SOFTHSM2_CONF=${SOFTHSM2_CONF:-})" ;;
	*"key not found"* | *"object not found"*) hint="token '$TOKEN' holds no key with id $KEY_ID" ;;
	# SoftHSM answers C_Decrypt of a bad blob with CKR_GENERAL_ERROR; pkcs11-tool then retries multipart,
	# which SoftHSM has not for RSA, and reports that.
	*CKR_ENCRYPTED_DATA_INVALID* | *CKR_ENCRYPTED_DATA_LEN_RANGE* | \
		*"C_DecryptUpdate failed: rv = CKR_FUNCTION_NOT_SUPPORTED"*)
		hint="the input was not wrapped by key $KEY_ID of token '$TOKEN', or it is damaged"
		;;
	esac
	printf '%s%s' "${hint:+$hint: }" "${said% }"
}

# pkcs11-tool ARGS...: runs it on the token, logged in; dies with what it said when it fails.
pkcs11() {
	local said
	if ! said=$("$PKCS11_TOOL" --module "$MODULE" --token-label "$TOKEN" --login --pin env:LIFELINE_PKCS11_PIN \
		"$@" </dev/null 2>&1 >/dev/null); then
		die "$(explain "$said")"
	fi
}

main() {
	local said store
	case $OPERATION in
	wrap | unwrap) ;;
	'') die "LIFELINE_KMS_OPERATION is not set: it must be wrap or unwrap" ;;
	*) die "unknown LIFELINE_KMS_OPERATION '$OPERATION': it must be wrap or unwrap" ;;
	esac
	[[ $# -eq 0 ]] || die "takes no arguments (the operation comes in LIFELINE_KMS_OPERATION)"
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/lifeline-kms.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	cat >"$tmp/in"
	[[ -s $tmp/in ]] || die "nothing on stdin"

	if [[ -n ${SOFTHSM2_CONF:-} ]]; then
		[[ -f $SOFTHSM2_CONF ]] || die "SOFTHSM2_CONF=$SOFTHSM2_CONF does not exist"
		# SoftHSM would only say that C_Initialize failed.
		store=$(sed -n 's/^[[:space:]]*directories\.tokendir[[:space:]]*=[[:space:]]*//p' "$SOFTHSM2_CONF" |
			tail -n 1)
		[[ -z $store || -d $store ]] || die "the token store $store (in $SOFTHSM2_CONF) does not exist"
		# One process at a time on a SoftHSM token store: its file backend, used by processes at once,
		# fails some of them ("No slot with token", "Token integrity check failed": SoftHSMv2 issue
		# 757), here 4 to 8 of 16 started together. The lock is on the config, which every user opens.
		exec 9<"$SOFTHSM2_CONF"
		flock -w 60 9 || die "another process has held the lock on $SOFTHSM2_CONF for 60 s"
	fi
	[[ -f $MODULE ]] || die "the PKCS#11 module $MODULE does not exist (LIFELINE_PKCS11_MODULE)"
	command -v "$PKCS11_TOOL" >/dev/null ||
		die "$PKCS11_TOOL not found (LIFELINE_PKCS11_TOOL; scripts/softhsm.sh install)"

	case $OPERATION in
	wrap)
		pkcs11 --read-object --type pubkey --id "$KEY_ID" --output-file "$tmp/public.der"
		[[ -s $tmp/public.der ]] || die "token '$TOKEN' holds no public key with id $KEY_ID"
		said=$(openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$tmp/public.der" "${OPENSSL_OAEP[@]}" \
			-in "$tmp/in" -out "$tmp/out" 2>&1) || die "openssl could not encrypt to key $KEY_ID: $said"
		;;
	unwrap)
		pkcs11 --decrypt --id "$KEY_ID" "${OAEP[@]}" --input-file "$tmp/in" --output-file "$tmp/out"
		;;
	esac
	[[ -s $tmp/out ]] || die "no output came out of the $OPERATION"
	cat "$tmp/out"
}

main "$@"
