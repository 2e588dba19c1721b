################################################################################
#
# wsgate
#
################################################################################

WSGATE_VERSION = 0.1.0
WSGATE_SITE = $(call github,wsgate,wsgate,v$(WSGATE_VERSION))
WSGATE_LICENSE = MIT
WSGATE_LICENSE_FILES = LICENSE

# Only Config.in and this file go into Buildroot's package/wsgate/; the init script, the unit
# and the default configuration come from the source tree (board/ in wsgate's repository).

# cargo-package installs with `cargo install --root $(TARGET_DIR)/usr --path ./`: every
# [[bin]] of the gateway's package lands in /usr/bin. The sample servers are [[bin]]s of the
# backend kit, another package of the workspace (backend/): installed the same way, with the
# same options. Then the sample backend is removed unless asked for.
define WSGATE_INSTALL_KIT
	cd $(@D) && \
	$(TARGET_MAKE_ENV) \
		$(TARGET_CONFIGURE_OPTS) \
		$(PKG_CARGO_ENV) \
		$(WSGATE_CARGO_ENV) \
		cargo install \
			--offline \
			--root $(TARGET_DIR)/usr/ \
			--bins \
			--path backend \
			--force \
			--locked \
			-Z target-applies-to-host \
			$(WSGATE_CARGO_INSTALL_OPTS)
endef
WSGATE_POST_INSTALL_TARGET_HOOKS += WSGATE_INSTALL_KIT

ifeq ($(BR2_PACKAGE_WSGATE_ECHO),)
define WSGATE_REMOVE_ECHO
	rm -f $(TARGET_DIR)/usr/bin/websocket_echo
endef
WSGATE_POST_INSTALL_TARGET_HOOKS += WSGATE_REMOVE_ECHO
endif

# Build the profile board/sizes.md measures, the one within the size budget: release-small
# (Cargo.toml: opt-level "z") with panic = "immediate-abort" and std rebuilt for size without
# its backtrace symbolizer (about 175 KiB), exactly as `scripts/cross.sh build-small`. Those
# are unstable options: RUSTC_BOOTSTRAP=1 allows them on the stable toolchain. -Zbuild-std
# compiles std from rust-src, which host-rust-bin does not install: it is fetched here for the
# toolchain's version and installed into $(HOST_DIR) once. The build step is ours because
# pkg-cargo's passes --release, which cargo refuses next to --profile; its install step takes
# the same options.
WSGATE_CARGO_ENV = RUSTC_BOOTSTRAP=1
WSGATE_CARGO_PROFILE_OPTS = \
	--profile release-small \
	-Z build-std=std,panic_abort \
	-Z build-std-features=optimize_for_size \
	-Z panic-immediate-abort \
	--config 'profile.release-small.panic="immediate-abort"'
# permessage-deflate (the gateway's cargo feature `deflate`) only with
# BR2_PACKAGE_WSGATE_DEFLATE: it adds about 93 KiB, which the default build, within the size
# budget, leaves out. The backend kit's crates have no default features.
ifeq ($(BR2_PACKAGE_WSGATE_DEFLATE),)
WSGATE_CARGO_PROFILE_OPTS += --no-default-features
endif
WSGATE_CARGO_INSTALL_OPTS = $(WSGATE_CARGO_PROFILE_OPTS)

WSGATE_RUST_SRC = rust-src-$(RUST_BIN_VERSION).tar.xz
WSGATE_EXTRA_DOWNLOADS = https://static.rust-lang.org/dist/$(WSGATE_RUST_SRC)

define WSGATE_INSTALL_RUST_SRC
	if [ ! -d $(HOST_DIR)/lib/rustlib/src/rust/library ]; then \
		mkdir -p $(@D)/rust-src && \
		$(call suitable-extractor,$(WSGATE_RUST_SRC)) $(WSGATE_DL_DIR)/$(WSGATE_RUST_SRC) | \
			$(TAR) -C $(@D)/rust-src --strip-components=1 $(TAR_OPTIONS) - && \
		(cd $(@D)/rust-src && ./install.sh --prefix=$(HOST_DIR) --disable-ldconfig); \
	fi
endef
WSGATE_PRE_BUILD_HOOKS += WSGATE_INSTALL_RUST_SRC

define WSGATE_BUILD_CMDS
	cd $(@D) && \
	$(TARGET_MAKE_ENV) \
		$(TARGET_CONFIGURE_OPTS) \
		$(PKG_CARGO_ENV) \
		$(WSGATE_CARGO_ENV) \
		cargo build \
			--offline \
			--manifest-path Cargo.toml \
			--locked \
			--bins \
			$(WSGATE_CARGO_PROFILE_OPTS)
endef

define WSGATE_INSTALL_CONF
	$(INSTALL) -D -m 0644 $(@D)/board/buildroot/wsgate.conf $(TARGET_DIR)/etc/wsgate.conf
endef
WSGATE_POST_INSTALL_TARGET_HOOKS += WSGATE_INSTALL_CONF

define WSGATE_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(@D)/board/buildroot/S50wsgate $(TARGET_DIR)/etc/init.d/S50wsgate
endef

define WSGATE_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(@D)/board/systemd/wsgate.service \
		$(TARGET_DIR)/usr/lib/systemd/system/wsgate.service
endef

$(eval $(cargo-package))
