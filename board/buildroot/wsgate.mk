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

# cargo-package builds with `cargo install --root $(TARGET_DIR)/usr`: every [[bin]] of the
# package lands in /usr/bin. Remove the sample backend unless asked for.
ifeq ($(BR2_PACKAGE_WSGATE_ECHO),)
define WSGATE_REMOVE_ECHO
	rm -f $(TARGET_DIR)/usr/bin/websocket_echo
endef
WSGATE_POST_INSTALL_TARGET_HOOKS += WSGATE_REMOVE_ECHO
endif

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
