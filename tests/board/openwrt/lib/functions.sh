# shellcheck shell=sh
# Stand-in for OpenWrt's /lib/functions.sh in the packaging tests (tests/board): the config_*
# API that init scripts use, with the real one's semantics. Like the real one, config_load
# evaluates the output of `uci export`, whose lines (package, config, option, list) are shell
# commands defined here; `uci` is the stand-in next to this directory (bin/uci).
# Not OpenWrt's code: written from its documented behaviour.

package() { :; }

config() {
	CONFIG_NUM_SECTIONS=$((CONFIG_NUM_SECTIONS + 1))
	CONFIG_SECTION="${2:-cfg$CONFIG_NUM_SECTIONS}"
	CONFIG_SECTIONS="$CONFIG_SECTIONS $CONFIG_SECTION"
	eval "CONFIG_${CONFIG_SECTION}_TYPE=\$1"
}

option() {
	eval "CONFIG_${CONFIG_SECTION}_$1=\$2"
}

list() {
	_len=
	eval "_len=\${CONFIG_${CONFIG_SECTION}_$1_LENGTH:-0}"
	_len=$((_len + 1))
	eval "CONFIG_${CONFIG_SECTION}_$1_ITEM$_len=\$2"
	eval "CONFIG_${CONFIG_SECTION}_$1_LENGTH=$_len"
	[ "$_len" != 1 ] || CONFIG_LIST_STATE="$CONFIG_LIST_STATE ${CONFIG_SECTION}_$1"
	# config_get of a list gives the items separated by spaces
	eval "CONFIG_${CONFIG_SECTION}_$1=\"\${CONFIG_${CONFIG_SECTION}_$1:+\$CONFIG_${CONFIG_SECTION}_$1 }\$2\""
}

# Like OpenWrt's uci_load, a load forgets the lists of the previous one only without
# UCI_CONFIG_DIR (which the tests set): callers must load once.
config_load() {
	if [ -z "$UCI_CONFIG_DIR" ]; then
		for _v in $CONFIG_LIST_STATE; do
			eval "CONFIG_${_v}=; CONFIG_${_v}_LENGTH="
		done
		CONFIG_LIST_STATE=
	fi
	CONFIG_SECTIONS=
	CONFIG_NUM_SECTIONS=0
	CONFIG_SECTION=
	_export=$(uci export "$1") || return 1
	eval "$_export"
}

config_get() {
	eval "$1=\${CONFIG_$2_$3:-\$4}"
}

config_get_bool() {
	_b=
	config_get _b "$2" "$3" "$4"
	case "$_b" in
	1 | on | true | yes | enabled) _b=1 ;;
	0 | off | false | no | disabled) _b=0 ;;
	*) _b="$4" ;;
	esac
	eval "$1=\$_b"
}

# config_foreach FUNCTION [TYPE [ARGS...]]: FUNCTION SECTION ARGS... for each section (of
# TYPE); a failing FUNCTION does not stop the loop (as in OpenWrt).
config_foreach() {
	_fn="$1"
	_type="$2"
	shift
	[ $# -gt 0 ] && shift
	for _s in $CONFIG_SECTIONS; do
		_t=
		eval "_t=\$CONFIG_${_s}_TYPE"
		[ -z "$_type" ] || [ "$_t" = "$_type" ] || continue
		"$_fn" "$_s" "$@"
	done
	return 0
}

# config_list_foreach SECTION OPTION FUNCTION [ARGS...]: FUNCTION VALUE ARGS... per item.
config_list_foreach() {
	_ls="$1"
	_lo="$2"
	_lf="$3"
	shift 3
	_ln=
	config_get _ln "$_ls" "${_lo}_LENGTH"
	[ -n "$_ln" ] || return 0
	_lc=1
	while [ "$_lc" -le "$_ln" ]; do
		_lv=
		config_get _lv "$_ls" "${_lo}_ITEM$_lc"
		"$_lf" "$_lv" "$@"
		_lc=$((_lc + 1))
	done
	return 0
}
