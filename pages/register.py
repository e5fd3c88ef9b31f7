"""An old address (/register): what it showed is on the Discover page now; bookmarks land there."""

from sfduck_ui.moved import forward

forward("register")
