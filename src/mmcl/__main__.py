from mmcl.cli import main

main()
